"""Run records: the volatile facts of one execution, kept out of the DVC outputs."""

import subprocess
from pathlib import Path

import pytest

from scratchlm.io import DataFormatError
from scratchlm.lineage.runrecord import (
    git_state,
    is_timing,
    read_run_record,
    split_timing,
    upstream_run_ids,
    write_run_record,
)


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for cmd in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "dvc.lock").write_text("a\n")
    (tmp_path / "reports" / "runs").mkdir(parents=True)
    (tmp_path / "reports" / "runs" / "clean.json").write_text("{}\n")
    subprocess.run(["git", "add", "."], check=True)
    subprocess.run(["git", "commit", "-qm", "init"], check=True)
    return tmp_path


def test_git_state_ignores_what_stages_rewrite_but_not_code(git_repo: Path) -> None:
    commit, dirty = git_state()
    assert commit and len(commit) == 40 and not dirty
    (git_repo / "dvc.lock").write_text("b\n")
    (git_repo / "reports" / "runs" / "clean.json").write_text('{"x": 1}\n')
    assert git_state() == (commit, False)
    (git_repo / "code.py").write_text("x = 2\n")
    assert git_state() == (commit, True)


def test_timing_leaves_are_split_out_of_the_metrics() -> None:
    metrics = {"val_loss": 5.0, "train_seconds": 3.0, "tokens_per_s": 10.0, "mfu": 0.5, "peak_tflops": 0.1,
               "peak_tflops_source": "measured",
               "benchmarks": {"piqa": {"acc": 0.5, "seconds": 1.2}}}
    kept, timing = split_timing(metrics)
    assert kept == {"val_loss": 5.0, "benchmarks": {"piqa": {"acc": 0.5}}}
    assert timing == {"train_seconds": 3.0, "tokens_per_s": 10.0, "mfu": 0.5, "peak_tflops": 0.1,
                      "peak_tflops_source": "measured", "benchmarks": {"piqa": {"seconds": 1.2}}}
    assert is_timing("benchmarks.piqa.seconds") and not is_timing("benchmarks.piqa.acc")


def test_record_round_trip_and_upstream_ids(git_repo: Path) -> None:
    record = write_run_record("clean", output="data/clean", manifest_sha256="m" * 64, run_id="r1", experiment="e",
                              started="t0", seconds=1.5, timing={"train_seconds": 1.0}, dvc_exp=None, commit="c",
                              dirty=False)
    assert read_run_record("clean") == record
    assert record["machine"]["cpus"] and "native_bf16" in record["machine"] and record["versions"]["python"]
    inputs = {"data/clean": {"producer_stage": "clean", "producer_manifest": "m" * 64},
              "data/other": {"producer_stage": "clean", "producer_manifest": "x" * 64}}
    assert upstream_run_ids({"data/clean": inputs["data/clean"]}) == {"clean": "r1"}
    assert upstream_run_ids({"data/other": inputs["data/other"]}) == {}, "a record of another output is not upstream"
    # a consumer of a part of the output (data/raw/pretrain) recorded the producer's entries for that part
    from scratchlm.lineage.manifest import describe_code, describe_input, manifest_sha256, write_manifest

    Path("data/raw/pretrain").mkdir(parents=True)
    Path("data/raw/pretrain/a.txt").write_text("a")
    write_manifest(Path("data/raw"), stage="download", params={}, inputs={}, code=describe_code([], Path(".")))
    write_run_record("download", output="data/raw", manifest_sha256=manifest_sha256("data/raw"), run_id="d1",
                     experiment="e", started="t0", seconds=1.0, timing={}, dvc_exp=None, commit="c", dirty=False)
    part = {"data/raw/pretrain": describe_input("data/raw/pretrain")}
    assert "producer_part" in part["data/raw/pretrain"] and upstream_run_ids(part) == {"download": "d1"}
    part["data/raw/pretrain"]["producer_part"] = "0" * 64
    assert upstream_run_ids(part) == {}, "entries other than the ones read: not that run's"
    Path("reports/runs/clean.json").write_text("[1, 2]")
    with pytest.raises(DataFormatError, match=r"reports/runs/clean.json: corrupt run record \(not an object\)"):
        read_run_record("clean")
