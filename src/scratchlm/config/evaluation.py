"""The evaluate section and its optional LLM judge."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from scratchlm.config.base import Section

# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------

BENCHMARK_TASKS = ["hellaswag", "piqa", "arc_easy", "arc_challenge", "winogrande", "sciq", "lambada"]


class JudgeParams(Section):
    """An optional LLM judge for the instruction model (any OpenAI-compatible endpoint); off when null."""

    endpoint: str | None = Field(default=None, description="e.g. http://localhost:8000/v1; null skips the judge")
    model: str = Field(default="gpt-4o-mini", description="the model name sent to the endpoint")
    api_key_env: str = Field(default="OPENAI_API_KEY", description="environment variable holding the API key")
    items: int = Field(default=20, ge=1, description="test answers the judge scores (and instruct vs aligned pairs it "
                                                     "compares)")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="seconds to wait for each answer of the endpoint")

    @model_validator(mode="after")
    def _http(self) -> JudgeParams:
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError("endpoint must start with http:// or https://")
        return self


class EvaluateParams(Section):
    """The `evaluate` stage: which benchmarks, how many items each, held-out text, the fine-tunes' tests."""

    tasks: list[str] = Field(
        default_factory=lambda: list(BENCHMARK_TASKS), min_length=1, description="the benchmarks scored")
    max_items: int | None = Field(default=500, ge=1, description="items per task (the first by id); null = all")
    task_items: dict[str, int] = Field(default_factory=dict, description="per-task overrides of max_items")
    batch_size: int = Field(default=32, ge=1, description="sequences per forward pass when scoring benchmarks and "
                                                          "held-out text")
    lm_sources: list[str] | None = Field(default=None, min_length=1,
                                         description="held-out documents of these sources are scored together; "
                                                     "null: each pretraining source of the split on its own")
    lm_splits: list[Literal["val", "test"]] | None = Field(default=None, min_length=1,
                                                           description="null: every held-out split that has "
                                                                       "documents")
    lm_stride: int = Field(default=256, ge=1, description="new tokens per rolling window (≥ block_size: disjoint "
                                                         "windows, as lm-evaluation-harness scores WikiText)")
    lm_max_documents: int | None = Field(default=None, ge=1, description="per split, the first by id; null = all")
    instruct_items: int | None = Field(default=200, ge=1, description="test items answered and scored by each "
                                       "instruction model (the first in a seeded order of ids); null = all")
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default: all cores)")
    judge: JudgeParams = Field(default_factory=JudgeParams, description="the optional LLM judge")

    @model_validator(mode="after")
    def _known_tasks(self) -> EvaluateParams:
        for task in [*self.tasks, *self.task_items]:
            if task not in BENCHMARK_TASKS:
                raise ValueError(f"unknown task {task!r} (known: {', '.join(BENCHMARK_TASKS)})")
        return self
