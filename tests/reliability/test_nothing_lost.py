"""Nothing lost, in the workspace: after any failed or killed stage, under `dvc repro` as a user runs it, every
previous output (folders, metrics, plots, model card, run records) is in place byte for byte, with no
`dvc checkout` needed, on a copy of the finished debug DAG.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dag_tools import dvc, fresh_tracking
from stage_cli import REPO, set_params

from scratchlm.io import list_files, sha256_file

pytestmark = pytest.mark.slow

STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"])
#: One out-of-range value per stage's params section (each is refused before any work starts).
BAD_VALUE = {"download": {"timeout_s": -1}, "clean": {"min_words": -3}, "dedup": {"shingle_words": 0},
             "validate": {"min_text_chars": 0}, "tokenizer": {"vocab_size": 10}, "tokenize": {"batch_docs": 0},
             "pretrain": {"lr": -1}, "finetune_classifier": {"epochs": 0}, "finetune_instruct": {"epochs": 0},
             "align": {"beta": 0}, "evaluate": {"max_items": 0}, "report": {"sample_generations": -1}, "scaling": {"benchmark_items": 0},
             "scaling_fit": {"bootstrap": 1}}
#: One stage of each kind: data, a report-style stage with a check, training, evaluation, the model card.
KINDS = ["clean", "validate", "pretrain", "evaluate", "report"]


def workspace(dag: Path) -> dict[str, str]:
    """sha256 of every output file a user sees: data, models, reports (metrics, plots, card, run records).

    A killed stage's temp folder (`.<output>.tmp-*`, git-ignored, cleared by the stage's next run) is not an
    output and is left out.
    """
    return {p.relative_to(dag).as_posix(): sha256_file(p) for name in ("data", "models", "reports")
            for p in list_files(dag / name)
            if not any(part.startswith(".") and ".tmp-" in part for part in p.relative_to(dag).parts)}


def test_every_stage_has_a_bad_value_and_dvc_never_deletes_an_output_before_a_run() -> None:
    """What makes a failure of any stage safe: DVC leaves every out in place (`persist: true`) and the stage swaps
    its new output in last. Checked for every out of every stage here, exercised per kind of stage below."""
    assert set(BAD_VALUE) == set(STAGES)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for stage, spec in stages.items():
        spec = spec.get("do", spec)  # a stage family's members (foreach) share one spec
        for key in ("outs", "metrics", "plots"):
            for item in spec.get(key) or []:
                assert isinstance(item, dict) and next(iter(item.values())).get("persist") is True, (stage, item)


@pytest.mark.parametrize("stage", ["download", *KINDS, "finetune_instruct"])
def test_a_failed_stage_leaves_every_output_in_place(dag: Path, stage: str) -> None:
    before = workspace(dag)
    original = (dag / "params.yaml").read_bytes()
    set_params(dag, {stage: BAD_VALUE[stage]})
    result = dvc(dag, "repro", "--single-item", stage)
    assert result.returncode != 0 and f"error: {stage}: {stage}" in result.stderr + result.stdout, result.stderr
    assert workspace(dag) == before  # in place right away: no `dvc checkout`, nothing to restore
    (dag / "params.yaml").write_bytes(original)
    status = dvc(dag, "status")
    assert "up to date" in status.stdout, status.stdout


def kill_under_dvc(dag: Path, stage: str, output: Path) -> None:
    """`dvc repro --force` of one stage, SIGKILLed (DVC and the stage) once the stage's temp output has a file."""
    env = {**os.environ, **fresh_tracking(dag), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(["dvc", "repro", "--force", "--single-item", stage], cwd=dag, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if any(any(tmp.iterdir()) for tmp in output.parent.glob(f".{output.name}.tmp-*")):
            break
        time.sleep(0.002)
    assert process.poll() is None, f"{stage} ended (exit {process.returncode}) before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


OUTPUT = {"clean": "data/clean", "validate": "reports/data_validation", "pretrain": "models/pretrain",
          "evaluate": "reports/evaluation", "report": "reports/model_card"}


@pytest.mark.parametrize("stage", KINDS)
def test_sigkill_under_dvc_repro_keeps_every_output_and_its_metrics(dag: Path, stage: str) -> None:
    before = workspace(dag)
    output = dag / OUTPUT[stage]
    kill_under_dvc(dag, stage, output)
    assert list(output.parent.glob(f".{output.name}.tmp-*")), "the kill came while the stage was writing"
    assert workspace(dag) == before
    status = dvc(dag, "status")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
    if stage == "evaluate":  # the next run clears what the killed one left, and succeeds
        rerun = dvc(dag, "repro", "--force", "--single-item", stage)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert not list(output.parent.glob(f".{output.name}.*"))


@pytest.mark.parametrize("stage", ["download", "tokenizer", "tokenize"])
def test_an_unwritable_artifact_store_fails_the_stage_before_anything_is_replaced(dag: Path, stage: str) -> None:
    """MLflow's artifact store is `mlartifacts/` beside a new database: a file there makes every upload fail."""
    tracking = {"MLFLOW_TRACKING_URI": f"sqlite:///{dag / 'fresh.db'}"}
    shutil.rmtree(dag / "mlartifacts", ignore_errors=True)
    (dag / "mlartifacts").write_text("not a folder")
    before = workspace(dag)
    env = {**os.environ, **tracking, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["dvc", "repro", "--force", "--single-item", stage], cwd=dag, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"error: {stage}: ")]
    assert len(errors) == 1 and "could not log the artifact" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert workspace(dag) == before
