"""The stage registry: every stage of dvc.yaml once, with what the rest of the project needs to know about it.

Each list that used to be kept by hand derives from here: the params section each stage reads (the
config loader, the params reference, the audit), the stages whose metrics the report reads, the models
the report registers, and the stages that train (whose weights the audit's reproduction compares by
metrics rather than bytes). A test checks this registry against dvc.yaml's stages.

Sections are named by "module:Class" and imported only when asked for, so a stage depends on its own
section's module and not on every other one (`scratchlm.lineage.code_deps` adds that module to the
stage's code deps, the way a direct import would).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scratchlm.config.base import Section


@dataclass(frozen=True)
class Stage:
    """One dvc.yaml stage (a `foreach` family, e.g. `scaling`, is one entry)."""

    name: str
    """The stage's name: also its params section, its script (`pipelines/<name>.py`) and its MLflow run."""
    section: str
    """Its params section's model, as "module:Class"."""
    metrics: bool = True
    """Whether the report reads its reports/metrics/<name>.json."""
    trains: bool = False
    """Whether it trains weights: a reproduction compares its metrics within a tolerance, not its bytes."""
    registers: tuple[str, tuple[str, ...]] | None = None
    """The model the report registers from its output: (name after the prefix, evaluate metrics kept as tags)."""


#: dvc.yaml's stages, in its order.
STAGES: tuple[Stage, ...] = (
    Stage("download", "scratchlm.config.data:DownloadParams"),
    Stage("clean", "scratchlm.config.data:CleanParams"),
    Stage("dedup", "scratchlm.config.data:DedupParams"),
    Stage("validate", "scratchlm.config.data:ValidateParams"),
    Stage("tokenizer", "scratchlm.config.data:TokenizerParams"),
    Stage("tokenize", "scratchlm.config.data:TokenizeParams"),
    Stage("scaling", "scratchlm.config.scaling:ScalingParams", metrics=False, trains=True),
    Stage("scaling_fit", "scratchlm.config.scaling:ScalingFitParams"),
    Stage("pretrain", "scratchlm.config.training:PretrainParams", trains=True,
          registers=("pretrain", ("language_modeling", "benchmark_mean"))),
    Stage("finetune_classifier", "scratchlm.config.training:FinetuneClassifierParams", trains=True,
          registers=("classifier", ("classifier",))),
    Stage("finetune_instruct", "scratchlm.config.training:FinetuneInstructParams", trains=True,
          registers=("instruct", ("instruct",))),
    Stage("align", "scratchlm.config.training:AlignParams", trains=True, registers=("aligned", ("aligned",))),
    Stage("evaluate", "scratchlm.config.evaluation:EvaluateParams"),
    Stage("report", "scratchlm.config.report:ReportParams", metrics=False),
)

#: Sections every stage may read besides its own; they change where it logs and computes, never its output.
RUNTIME_SECTIONS = {"tracking": "scratchlm.config.runtime:TrackingParams",
                    "executor": "scratchlm.config.runtime:ExecutorParams"}

BY_NAME = {stage.name: stage for stage in STAGES}
#: params.yaml's sections -> their models as "module:Class", stages first in dvc.yaml's order.
SECTION_PATHS: dict[str, str] = {**{stage.name: stage.section for stage in STAGES}, **RUNTIME_SECTIONS}
METRIC_STAGES = [stage.name for stage in STAGES if stage.metrics]
TRAINING = tuple(stage.name for stage in STAGES if stage.trains)
REGISTERED = {stage.name: stage.registers for stage in STAGES if stage.registers}


def section_module(section: str) -> str:
    """The module that defines `section`'s model (`scratchlm.config.data` for `clean`)."""
    return SECTION_PATHS[section].partition(":")[0]


def section_class(section: str) -> type[Section]:
    """`section`'s model, imported now; KeyError for a name that is not a params section."""
    module, _, name = SECTION_PATHS[section].partition(":")
    return getattr(importlib.import_module(module), name)


def all_sections() -> dict[str, type[Section]]:
    """Every params section's model, in SECTION_PATHS' order (imports every config module)."""
    return {section: section_class(section) for section in SECTION_PATHS}
