"""The scaling ladder (`scaling@<rung>`) and its fit (`scaling_fit`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    Field,
    StringConstraints,
    model_validator,
)

from scratchlm.config.base import ConfigError, Section
from scratchlm.config.evaluation import BENCHMARK_TASKS
from scratchlm.config.loader import parse_section
from scratchlm.config.training import PretrainParams

# --------------------------------------------------------------------------------------------
# scaling (the ladder: `scaling@<rung>`) and scaling_fit
# --------------------------------------------------------------------------------------------

RUNG_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"

#: pretrain's keys that are not a rung's recipe: the size and the budget (what the ladder is about, and what it
#: chooses for a from_ladder pretrain), the schedule points a rung derives from its own steps, what a rung never
#: does (samples; compile is `scaling.compile`), and what does not change what is trained. dvc.yaml's scaling
#: stage lists every other pretrain key as its params (`rung_recipe_keys`; a test holds the two together), so a
#: new size or step count for pretrain re-runs pretrain, not the ladder that chose it.
NOT_RUNG_RECIPE = ("max_steps", "warmup_steps", "val_every", "ckpt_every", "max_time_minutes", "compile",
                   "sample_prompts", "sample_tokens", "dist_timeout_minutes",
                   "model.size", "model.n_layer", "model.n_head", "model.n_embd")


def rung_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """`recipe` (pretrain's params, nested) without the keys of NOT_RUNG_RECIPE."""
    top = {key for key in NOT_RUNG_RECIPE if "." not in key}
    inner = {key.split(".", 1)[1] for key in NOT_RUNG_RECIPE if key.startswith("model.")}
    kept = {key: value for key, value in recipe.items() if key not in top}
    if isinstance(kept.get("model"), dict):
        kept["model"] = {key: value for key, value in kept["model"].items() if key not in inner}
    return kept


def rung_recipe_keys() -> list[str]:
    """The dotted pretrain keys a rung depends on, in PretrainParams' order: dvc.yaml's scaling params."""
    from scratchlm.config.training import ModelParams

    flat = []
    for key in PretrainParams.model_fields:
        flat += [f"model.{inner}" for inner in ModelParams.model_fields] if key == "model" else [key]
    return [f"pretrain.{key}" for key in flat if key not in NOT_RUNG_RECIPE]


class ShapeParams(Section):
    """A model's shape: what the ladder varies and what scaling_fit chooses among."""

    n_layer: int = Field(ge=1, le=256, description="transformer blocks")
    n_head: int = Field(ge=1, le=256, description="attention heads per block; must divide n_embd")
    n_embd: int = Field(ge=1, description="the residual stream's width (embedding size)")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ShapeParams:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class RungParams(ShapeParams):
    """One rung's model size (and its tokens per parameter); everything else is the pretrain recipe (see
    scratchlm.scaling.ladder)."""

    tokens_per_param: float | None = Field(default=None, gt=0, description="tokens this rung sees per parameter "
                                           "(embeddings included); null: the ladder's tokens_per_param")

    def output_params(self) -> dict[str, Any]:
        """As params.yaml writes the rung: a ratio left to the ladder is absent, as dvc.lock records it."""
        out = super().output_params()
        if out["tokens_per_param"] is None:
            del out["tokens_per_param"]
        return out


class ScalingParams(Section):
    """The `scaling` stage family: one DVC stage `scaling@<rung>` per rung, small runs of the pretrain recipe."""

    rungs: dict[Annotated[str, StringConstraints(pattern=RUNG_NAME)], RungParams] = Field(
        min_length=1, description="name → model size (L(N, D) needs 6 at two or more tokens_per_param)")
    tokens_per_param: float = Field(gt=0, description="tokens each rung sees per parameter (embeddings included), "
                                    "where the rung sets none: the ladder's own, never pretrain's, so a new "
                                    "size or step count for pretrain does not re-run the ladder")
    compile: bool = Field(default=False, description="torch.compile for the rungs (its warm-up dominates short runs)")
    tasks: list[str] = Field(default_factory=lambda: list(BENCHMARK_TASKS), description="benchmarks scored per rung")
    benchmark_items: int = Field(default=200, ge=1, description="items per benchmark for each rung (the first by id)")

    @model_validator(mode="after")
    def _known_tasks(self) -> ScalingParams:
        for task in self.tasks:
            if task not in BENCHMARK_TASKS:
                raise ValueError(f"unknown task {task!r} (known: {', '.join(BENCHMARK_TASKS)})")
        return self

    def output_params(self) -> dict[str, Any]:
        """Each rung as params.yaml writes it (see RungParams.output_params)."""
        return {**super().output_params(), "rungs": {name: rung.output_params() for name, rung in self.rungs.items()}}

    def member(self, name: str, raw: dict[str, Any]) -> tuple[ScalingRunParams, list[str]]:
        """What the stage `scaling@<name>` is made with, and the other sections it reads (`pretrain`, the recipe)."""
        if name not in self.rungs:
            raise ConfigError(f"scaling.rungs: no rung {name!r} (has: {', '.join(self.rungs)})")
        recipe = parse_section("pretrain", raw.get("pretrain"))
        return ScalingRunParams(rung=name, size=self.rungs[name], recipe=recipe,
                                **self.model_dump(exclude={"rungs"})), ["pretrain"]


class ScalingRunParams(Section):
    """One rung stage's params: its name and size, the ladder's shared keys, and the recipe (`pretrain`)."""

    rung: str = Field(description="the rung's name (a key of scaling.rungs)")
    size: RungParams = Field(description="the rung's model size")
    recipe: PretrainParams = Field(description="the pretrain section the rung runs with")
    tokens_per_param: float = Field(description="the ladder's tokens_per_param (scaling.tokens_per_param)")
    compile: bool = Field(description="the ladder's compile (scaling.compile)")
    tasks: list[str] = Field(description="the ladder's tasks (scaling.tasks)")
    benchmark_items: int = Field(description="the ladder's benchmark_items (scaling.benchmark_items)")

    def output_params(self) -> dict[str, Any]:
        """Nested as params.yaml nests them, so each of dvc.lock's param keys for the stage (`pretrain`,
        `scaling.rungs.<rung>`, `scaling.compile`, …) is a path in the manifest's params."""
        shared = {k: v for k, v in super().output_params().items() if k not in ("rung", "size", "recipe")}
        return {"scaling": {"rungs": {self.rung: self.size.output_params()}, **shared},
                "pretrain": rung_recipe(self.recipe.output_params())}


class ScalingFitParams(Section):
    """The `scaling_fit` stage: the law fitted to the ladder, and pretrain's final val loss predicted from it."""

    confidence: float = Field(default=0.9, gt=0, lt=1, description="the prediction interval's coverage")
    bootstrap: int = Field(default=1000, ge=50, description="case-bootstrap resamples of the rungs")
    seed: int = Field(default=0, description="seed of the bootstrap resamples")
    budget_minutes: float | None = Field(default=None, gt=0, description="pretrain's budget as training minutes on "
                                         "this machine kind: each candidate's tokens are the minutes times its "
                                         "throughput, interpolated from the rungs' measured tokens/s")
    budget_flops: float | None = Field(default=None, gt=0, description="pretrain's budget as training FLOPs; null "
                                       "(and no budget_minutes): what pretrain as configured costs (fixed size)")
    candidates: list[ShapeParams] = Field(default_factory=list, description="the shapes scaling_fit chooses among "
                                          "for the budget (with the ladder's L(N, D)); empty: the rungs' shapes")

    @model_validator(mode="after")
    def _one_budget(self) -> ScalingFitParams:
        if self.budget_minutes is not None and self.budget_flops is not None:
            raise ValueError("budget_flops: set budget_minutes or budget_flops, not both")
        return self

    def joined(self, raw: dict[str, Any]) -> tuple[ScalingFitRunParams, list[str]]:
        """With the sections it also reads: the ladder (which rungs) and `pretrain` (the run it predicts)."""
        return ScalingFitRunParams(fit=self, ladder=parse_section("scaling", raw.get("scaling")),
                                   recipe=parse_section("pretrain", raw.get("pretrain"))), ["scaling", "pretrain"]


class ScalingFitRunParams(Section):
    """What `scaling_fit` is made with: its section, the ladder's and pretrain's (nested as in params.yaml)."""

    fit: ScalingFitParams = Field(description="the scaling_fit section")
    ladder: ScalingParams = Field(description="the scaling section (which rungs)")
    recipe: PretrainParams = Field(description="the pretrain section (the run whose final val loss is predicted)")

    def output_params(self) -> dict[str, Any]:
        return {"scaling_fit": self.fit.output_params(), "scaling": self.ladder.output_params(),
                "pretrain": self.recipe.output_params()}
