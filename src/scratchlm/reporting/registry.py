"""Which stage outputs the report registers in the MLflow Model Registry, and the tags each version carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from scratchlm.lineage.manifest import manifest_sha256
from scratchlm.lineage.runrecord import read_run_record
from scratchlm.lineage.tracking import flatten_metrics
from scratchlm.stages import REGISTERED


class Registrar(Protocol):
    def register_model(self, name: str, model_dir: Path, card: Path, tags: dict[str, str]) -> str | None: ...


def registry_tags(evaluation: dict[str, Any], keys: tuple[str, ...], trained_by: str) -> dict[str, str]:
    """The model's evaluation figures (baselines and confusion cells left out) and the run that trained it."""
    metrics = flatten_metrics({key: evaluation[key] for key in keys})
    tags = {k: f"{v:.6g}" for k, v in metrics.items() if "baselines" not in k and "confusion" not in k}
    return {**tags, "stage_run_id": trained_by}


def register_models(run: Registrar, outputs: dict[str, Path], card: Path, evaluation: dict[str, Any],
                    prefix: str) -> dict[str, str | None]:
    """A new version of `<prefix>-pretrain`, `-classifier`, `-instruct` and `-aligned`, each with the card; returns
    versions."""
    versions = {}
    for stage, (model, keys) in REGISTERED.items():
        record = read_run_record(stage) or {}
        vouches = record.get("manifest_sha256") == manifest_sha256(outputs[stage])
        trained_by = (record.get("mlflow_run_id") or "") if vouches else ""
        name = f"{prefix}-{model}"
        versions[name] = run.register_model(name, outputs[stage], card, registry_tags(evaluation, keys, trained_by))
    return versions


def register_evaluated(run: Registrar, metrics_dir: Path, outputs: dict[str, Path], card: Path, prefix: str) -> str:
    """Register every model with the figures `evaluate` measured for it; returns the line the stage prints.

    The report stage calls this only after every check of its run has passed (a version must never point at
    an output that was not swapped in)."""
    evaluation = json.loads((metrics_dir / "evaluate.json").read_text(encoding="utf-8"))
    versions = register_models(run, outputs, card, evaluation, prefix)
    return "registered " + ", ".join(f"{name} version {version}" for name, version in versions.items())
