"""`scratchlm audit` on a small real lineage: a git repo, three chained outputs with deterministic manifests
(`lineage.write_manifest`), run records (`runrecord.write_run_record`), real MLflow runs in a SQLite backend,
metrics files. No DVC project: the dvc and lock checks say "not checked" (tests/e2e and tests/reliability
cover them on the real DAG), except where a test writes a dvc.lock of its own."""

from __future__ import annotations

import json
import math
import shutil
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient
from ports import free_port
from typer.testing import CliRunner

from scratchlm.audit import (
    CLOSE,
    DIFF,
    FAIL,
    IGNORED,
    INFO,
    OK,
    SAME,
    SKIP,
    WARN,
    AuditError,
    AuditReport,
    audit,
    metric_row,
    render_reproduce,
    render_tree,
    reproduce_stage,
    to_markdown,
)
from scratchlm.cli import app
from scratchlm.config.loader import parse_section
from scratchlm.config.runtime import TrackingParams
from scratchlm.io import atomic_write_json, dvc_dir_md5, file_hashes
from scratchlm.lineage.manifest import describe_code, describe_input, manifest_sha256, write_manifest
from scratchlm.lineage.runrecord import utc_now, write_run_record
from scratchlm.lineage.tracker import stage_run
from scratchlm.lineage.tracking import flatten_metrics

DVC_YAML = """stages:
  download:
    cmd: python pipelines/download.py
    deps: [pipelines/download.py]
    outs: [data/raw]
    metrics: [{reports/metrics/download.json: {cache: false}}]
  clean:
    cmd: python pipelines/clean.py
    deps: [pipelines/clean.py, data/raw]
    params: [clean]
    outs: [data/clean]
    metrics: [{reports/metrics/clean.json: {cache: false}}]
  train:
    cmd: python pipelines/train.py
    deps: [pipelines/train.py, data/clean, data/raw/src/b.txt]
    outs: [models/train, {reports/plots/train.csv: {cache: false}}]
    metrics: [{reports/metrics/train.json: {cache: false}}]
"""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def fake_stage(stage: str, inputs: list[str], out: str, files: dict[str, bytes], params: dict[str, Any],
               metrics: dict[str, Any], steps: dict[str, float] | None = None, timing: dict[str, Any] | None = None
               ) -> str:
    """What src/scratchlm/lineage/stage.py does, with the same library calls: inputs described, outputs and metrics
    written, the manifest last, its digest tagged on the MLflow run, then the run record."""
    described = {path: describe_input(path) for path in sorted(inputs)}
    metrics_file = Path(f"reports/metrics/{stage}.json")
    with stage_run(stage, TrackingParams(experiment="t"), {"git_commit": git("rev-parse", "HEAD")}) as run:
        run.log_params(params)
        if steps:
            run.log_metrics(steps, step=5)  # per-step logging of a key the final metrics repeat
        for rel, data in files.items():
            (Path(out) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(out) / rel).write_bytes(data)
        atomic_write_json(metrics_file, metrics)
        write_manifest(Path(out), stage=stage, params=params, inputs=described,
                       code=describe_code([f"pipelines/{stage}.py"], Path(".")),
                       other_outputs={metrics_file.as_posix(): file_hashes(metrics_file)})
        digest = manifest_sha256(out)
        run.set_tags({"manifest_sha256": digest})
        run.log_metrics({**flatten_metrics(metrics), **flatten_metrics(timing or {})})
    write_run_record(stage, output=out, manifest_sha256=digest or "", run_id=run.run_id, experiment="t",
                     started=utc_now(), seconds=1.0, timing=timing or {}, dvc_exp=None, commit=git("rev-parse", "HEAD"),
                     dirty=False, store=run.store)
    return run.run_id or ""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """download -> clean -> train, all recorded, built once (creating an MLflow database takes seconds)."""
    root = tmp_path_factory.mktemp("lineage")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        for cmd in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
            git(*cmd)
        (root / "pipelines").mkdir()
        for stage in ("download", "clean", "train"):
            (root / "pipelines" / f"{stage}.py").write_text("x = 1\n")
        (root / "dvc.yaml").write_text(DVC_YAML)
        (root / ".gitignore").write_text("data/\nmodels/\nmlflow.db\nmlartifacts/\nreports/\n")
        git("add", ".")
        git("commit", "-qm", "init")
        runs = {"download": fake_stage("download", [], "data/raw", {"src/a.txt": b"alpha", "src/b.txt": b"beta"},
                                       {"sources": {"a": "x"}}, {"docs": 2, "loss": {"val": 0.0}})}
        clean_params = parse_section("clean", {"min_words": 3, "max_top_ngram_ratio": {"2": 0.25}}).output_params()
        runs["clean"] = fake_stage("clean", ["data/raw"], "data/clean", {"a.parquet": b"A" * 100}, clean_params,
                                   {"docs": 1, "loss": {"val": 0.1}})
        runs["train"] = fake_stage("train", ["data/clean", "data/raw/src/b.txt"], "models/train",
                                   {"model.safetensors": b"\x00\x01" * 50}, {"lr": 0.001},
                                   {"docs": 1, "loss": {"val": 1.5}, "flag": True}, steps={"loss.val": 3.0},
                                   timing={"train_seconds": 2.5, "tokens_per_s": 100.0})
    return root, runs


@pytest.fixture
def lineage(template: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private copy of the template lineage as the current directory (tests tamper with it); {stage: run id}."""
    root = Path(shutil.copytree(template[0], tmp_path / "repo", symlinks=True))
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return template[1]


def problems(report: AuditReport, check: str, stage: str | None = None) -> list[str]:
    return [p for node in report.nodes.values() if stage in (None, node.stage)
            for c in node.checks if c.name == check for p in c.problems]


def statuses(report: AuditReport, stage: str) -> dict[str, str]:
    node = next(n for n in report.nodes.values() if n.stage == stage)
    return {c.name: c.status for c in node.checks}


def edit_json(path: str | Path, change) -> None:
    data = json.loads(Path(path).read_text())
    change(data)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_clean_lineage_verifies_every_stage(lineage: dict[str, str]) -> None:
    report = audit("models/train", ".")
    assert not report.failed, render_tree(report)
    assert report.root == "models/train"
    assert {n.stage: n.run_id for n in report.nodes.values()} == lineage
    assert statuses(report, "clean") == {"outputs": OK, "inputs": OK, "lock": SKIP, "dvc": SKIP, "record": OK,
                                         "git": OK, "mlflow": OK, "versions": OK}
    tree = render_tree(report)
    assert tree.index("train") < tree.index("clean") < tree.index("download")
    assert "audit verified: 3 stages" in tree and "(see above)" in tree  # download is reached twice
    assert "| clean | `data/clean` |" in to_markdown(report)


def test_targets_resolve_to_their_output_folder(lineage: dict[str, str]) -> None:
    assert audit("reports/metrics/clean.json", ".").root == "data/clean"  # through dvc.yaml's metrics
    assert audit("data/raw/src/a.txt", ".").root == "data/raw"
    assert audit(lineage["clean"], ".").root == "data/clean"  # through the run records
    Path("reports/plots").mkdir(parents=True)
    Path("reports/plots/train.csv").write_text("step\n")
    assert audit("reports/plots/train.csv", ".").root == "models/train"  # a plain out of the stage
    with pytest.raises(AuditError, match="pipelines/clean.py is not a stage output"):
        audit("pipelines/clean.py", ".")
    with pytest.raises(AuditError, match="0123abcd is neither a path nor the MLflow run id"):
        audit("0123abcd", ".")


def test_cli_writes_both_reports_and_exits_0(lineage: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["audit", "models/train"])
    assert result.exit_code == 0, result.output
    assert "✓ train  models/train" in result.output
    saved = json.loads(Path("reports/audit.json").read_text())
    assert saved["failed"] is False and set(saved["nodes"]) == {"data/raw", "data/clean", "models/train"}
    assert "# Audit of `models/train`" in Path("reports/audit.md").read_text()
    bad = CliRunner().invoke(app, ["audit", "no-such-run"])
    assert bad.exit_code == 2 and "no-such-run is neither a path nor" in bad.output


def test_one_changed_byte_fails_naming_the_file(lineage: dict[str, str]) -> None:
    Path("data/raw/src/a.txt").write_bytes(b"alphA")
    report = audit("models/train", ".")
    assert report.failed
    assert problems(report, "outputs") == ["data/raw/src/a.txt: changed (sha256 differs from the manifest)"]
    assert problems(report, "inputs") == ["data/raw: input changed since the stage read it (sha256 differs)"]
    assert statuses(report, "train")["inputs"] == OK  # train read b.txt only
    result = CliRunner().invoke(app, ["audit", "models/train"])
    assert result.exit_code == 1 and "✗ outputs: data/raw/src/a.txt: changed" in result.output


def test_added_or_missing_output_file_fails(lineage: dict[str, str]) -> None:
    Path("models/train/extra.bin").write_bytes(b"x")
    Path("data/clean/a.parquet").unlink()
    found = problems(audit("models/train", "."), "outputs")
    assert "models/train/extra.bin: not in the manifest (added after the stage ran)" in found
    assert "data/clean/a.parquet: missing" in found


def test_edited_metrics_file_fails_naming_the_file_and_the_key(lineage: dict[str, str]) -> None:
    assert not audit("models/train", ".").failed  # loss.val was also logged at step 5 with another value
    edit_json("reports/metrics/clean.json", lambda m: m["loss"].update(val=0.1000001))
    report = audit("models/train", ".")
    assert report.failed and statuses(report, "clean")["mlflow"] == FAIL
    assert problems(report, "outputs") == ["reports/metrics/clean.json: changed (sha256 differs from the manifest)"]
    assert problems(report, "mlflow") == [
        f"reports/metrics/clean.json: loss.val = 0.1000001, MLflow run {lineage['clean']} has 0.1"]


def test_timing_in_the_run_record_is_checked_against_mlflow(lineage: dict[str, str]) -> None:
    edit_json("reports/runs/train.json", lambda r: r["timing"].update(tokens_per_s=999.0))
    assert problems(audit("models/train", "."), "mlflow") == [
        f"reports/runs/train.json timing: tokens_per_s = 999.0, MLflow run {lineage['train']} has 100.0"]


def test_a_rehashed_manifest_is_caught_by_its_consumer_its_record_and_its_run(lineage: dict[str, str]) -> None:
    """The forger edits a param in clean's manifest (or forges an output and re-hashes its entry): the manifest's
    digest changes, and the record, the MLflow run and train's manifest all hold the old one."""
    old = manifest_sha256("data/clean")
    edit_json("data/clean/manifest.json", lambda m: m["params"].update(min_words=50))
    new = manifest_sha256("data/clean")
    report = audit("models/train", ".")
    assert report.failed
    assert problems(report, "record", "clean") == [
        f"reports/runs/clean.json records manifest sha256 {old[:12]}, but data/clean/manifest.json has {new[:12]} "
        "and no MLflow run recorded it: the manifest changed after its run"]
    assert problems(report, "inputs", "train") == [
        f"data/clean: data/clean/manifest.json is not the one the stage read (sha256 {new[:12]} now, {old[:12]} then): "
        "its output was re-made or its manifest rewritten"]
    assert statuses(report, "clean")["mlflow"] == SKIP  # nothing vouches for the forged manifest


def test_a_forger_who_also_rewrites_the_run_record_is_caught_by_mlflow(lineage: dict[str, str]) -> None:
    edit_json("data/clean/manifest.json", lambda m: m["params"].update(min_words=50))
    edit_json("reports/runs/clean.json", lambda r: r.update(manifest_sha256=manifest_sha256("data/clean")))
    found = problems(audit("data/clean", "."), "mlflow")
    assert found[0].startswith(f"MLflow run {lineage['clean']} recorded manifest sha256 ")
    assert f"param min_words: manifest '50', MLflow run {lineage['clean']} '3'" in found
    assert statuses(audit("data/clean", "."), "clean")["record"] == OK  # the forger made the record agree


def test_a_run_record_naming_another_output_warns_when_mlflow_vouches(lineage: dict[str, str]) -> None:
    """After `dvc checkout` of an older output the record names the newer run; the older run recorded this one."""
    edit_json("reports/runs/clean.json", lambda r: r.update(manifest_sha256="0" * 64, mlflow_run_id="f" * 32))
    report = audit("data/clean", ".")
    assert not report.failed, render_tree(report)
    assert statuses(report, "clean")["record"] == WARN
    assert f"MLflow run {lineage['clean']} recorded this one" in problems(report, "record")[0]
    assert report.nodes["data/clean"].run_id == lineage["clean"]


def test_a_record_claiming_tracking_was_off_fails_where_mlflow_has_runs_of_the_stage(lineage: dict[str, str]) -> None:
    """A forger rewrites the record to name no MLflow run, so that no run's digest can contradict it."""
    edit_json("data/clean/manifest.json", lambda m: m["params"].update(min_words=50))
    edit_json("reports/runs/clean.json", lambda r: r.update(manifest_sha256=manifest_sha256("data/clean"),
                                                            mlflow_run_id=None))
    found = problems(audit("data/clean", "."), "mlflow")
    assert found == [f"reports/runs/clean.json names no MLflow run (tracking off), but MLflow has 1 run(s) of clean "
                     f"and none recorded this manifest ({manifest_sha256('data/clean')[:12]})"]


def test_missing_or_corrupt_run_record_fails(lineage: dict[str, str]) -> None:
    Path("reports/runs/download.json").unlink()
    Path("reports/runs/clean.json").write_text("{not json")
    report = audit("data/clean", ".")
    assert problems(report, "record", "download") == [
        "reports/runs/download.json: missing (no record of the run that wrote data/raw)"]
    assert problems(report, "record", "clean") == ["reports/runs/clean.json: corrupt run record (not JSON)"]


def test_deleted_run_fails_naming_the_run_id(lineage: dict[str, str]) -> None:
    MlflowClient(f"sqlite:///{Path.cwd() / 'mlflow.db'}").delete_run(lineage["download"])
    report = audit("models/train", ".")
    assert report.failed
    assert problems(report, "mlflow") == [f"MLflow run {lineage['download']} is deleted"]


def records_name(store: dict[str, Any]) -> None:
    """Every run record names `store` as the one holding its run (keys given replace the recorded ones)."""
    for path in Path("reports/runs").glob("*.json"):
        edit_json(path, lambda r: r.update(mlflow_store={**r["mlflow_store"], **store}))


def test_a_run_record_names_the_store_that_holds_its_run(lineage: dict[str, str], template) -> None:
    record = json.loads(Path("reports/runs/train.json").read_text())
    store = record["mlflow_store"]
    assert store["kind"] == "local" and store["host"] == socket.gethostname()
    assert store["uri"] == f"sqlite:///{template[0] / 'mlflow.db'}"  # absolute: the store the template's runs went to
    experiment = MlflowClient(store["uri"]).get_experiment_by_name("t")
    assert experiment.tags["scratchlm.store_id"] == store["id"] and len(store["id"]) == 32
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs table


def test_the_run_is_checked_in_the_store_its_record_names_wherever_the_audit_points(
        lineage: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Pointed at a store without these runs, the audit still checks each run where its record says it is (a
    local store on this machine), and never creates the store it was pointed at."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    report = audit("models/train", ".")
    assert {statuses(report, stage)["mlflow"] for stage in lineage} == {OK} and not report.unchecked
    assert not (tmp_path / "elsewhere.db").exists()
    edit_json("reports/runs/download.json", lambda r: r.update(mlflow_run_id="f" * 32))  # a run the store lacks
    found = problems(audit("data/raw", "."), "mlflow")
    assert found == [f"MLflow run {'f' * 32} not found in {json.loads(Path('reports/runs/download.json').read_text())['mlflow_store']['uri']}"]


def test_the_workspaces_own_store_gone_or_corrupt_fails_in_one_line(lineage: dict[str, str]) -> None:
    """A store that the records name as this workspace's own is missing or corrupt: a failure, never 'out of
    reach' (its runs are lost, not elsewhere)."""
    own = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    records_name({"uri": own})
    Path("mlflow.db").unlink()
    report = audit("data/raw", ".")
    assert problems(report, "mlflow") == [f"MLflow run {lineage['download']} not found in {own}"]
    assert not Path("mlflow.db").exists() and not report.unchecked  # the audit never creates an empty backend
    Path("mlflow.db").write_bytes(b"\x00garbage" * 1000)
    found = problems(audit("data/raw", "."), "mlflow")
    assert len(found) == 1 and "cannot be read (DatabaseError: (sqlite3.DatabaseError) file is not a database)" in found[0]
    assert "\n" not in found[0]


def test_a_run_in_another_machines_local_store_is_listed_not_failed_and_strict_fails(
        lineage: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A clone on another machine: its own store (empty here) is not the one the records name, and the named one
    is a file on machine 'laptop-a'. Every other check still runs; the runs are listed; --strict fails."""
    records_name({"host": "laptop-a"})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mine.db'}")
    report = audit("models/train", ".")
    assert not report.failed and [node.stage for node in report.unchecked] == ["train", "clean", "download"]
    for stage in lineage:
        assert statuses(report, stage) == {"outputs": OK, "inputs": OK, "lock": SKIP, "dvc": SKIP, "record": OK,
                                           "git": OK, "mlflow": INFO, "versions": OK}
    [line] = problems(report, "mlflow", "clean")
    assert line.startswith(f"MLflow run {lineage['clean']} is in a local store this audit cannot reach") \
        and "on machine 'laptop-a'" in line
    tree = render_tree(report)
    assert "i 3 MLflow run(s) not checked, in stores this audit cannot reach" in tree and "audit verified" in tree
    assert f"clean ({lineage['clean'][:8]})" in tree
    assert audit("models/train", ".", strict=True).failed
    assert CliRunner().invoke(app, ["audit", "models/train"]).exit_code == 0
    strict = CliRunner().invoke(app, ["audit", "models/train", "--strict"])
    assert strict.exit_code == 1 and "audit FAILED" in strict.output and "--strict fails on them" in strict.output
    assert json.loads(Path("reports/audit.json").read_text())["unchecked"] == {
        stage: lineage[stage] for stage in ("train", "clean", "download")}


def test_a_record_that_names_a_server_is_checked_there(lineage: dict[str, str]) -> None:
    """A server named by a record is where its run is checked: one that does not answer fails, naming it."""
    port = free_port()
    records_name({"kind": "server", "uri": f"http://127.0.0.1:{port}", "id": "0" * 32})
    found = problems(audit("data/raw", "."), "mlflow")
    assert len(found) == 1 and f"http://127.0.0.1:{port} is unreachable" in found[0], found


def test_missing_commit_fails_and_changed_code_warns(lineage: dict[str, str]) -> None:
    edit_json("reports/runs/download.json", lambda r: r.update(git_commit="0" * 40))
    Path("pipelines/clean.py").write_text("x = 2\n")
    report = audit("models/train", ".")
    assert report.failed and statuses(report, "download")["git"] == FAIL
    assert f"commit {'0' * 40} does not exist in this repository" in problems(report, "git")
    assert statuses(report, "clean")["git"] == WARN and statuses(report, "train")["git"] == OK
    assert any(p.startswith("code changed since the stage ran") and p.endswith("pipelines/clean.py")
               for p in problems(report, "git"))


def test_package_versions_are_information_only(lineage: dict[str, str]) -> None:
    edit_json("reports/runs/train.json", lambda r: r["versions"].update(torch="0.0.1"))
    report = audit("models/train", ".")
    assert not report.failed and statuses(report, "train")["versions"] == INFO
    assert problems(report, "versions")[0].startswith("torch 0.0.1 -> ")


def test_lock_that_records_other_params_or_code_fails_naming_them(lineage: dict[str, str]) -> None:
    """What `dvc commit -f` after editing params or code leaves: a dvc.lock the output was never made with."""
    manifest = json.loads(Path("data/clean/manifest.json").read_text())
    outputs = {rel: e["md5"] for rel, e in manifest["outputs"].items()}
    outputs["manifest.json"] = file_hashes("data/clean/manifest.json")["md5"]
    entry = {"cmd": "python pipelines/clean.py",
             "deps": [{"path": "data/raw", "md5": manifest["inputs"]["data/raw"]["md5"]},
                      {"path": "pipelines/clean.py", "md5": manifest["code"]["pipelines/clean.py"]["md5"]}],
             "params": {"params.yaml": {"clean": {"min_words": 3, "max_top_ngram_ratio": {"2": 0.25}}}},
             "outs": [{"path": "data/clean", "md5": dvc_dir_md5(outputs)},
                      {"path": "reports/metrics/clean.json", "md5": file_hashes("reports/metrics/clean.json")["md5"]}]}
    Path("dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"clean": entry}}))
    assert statuses(audit("data/clean", "."), "clean")["lock"] == OK
    entry["params"]["params.yaml"]["clean"]["min_words"] = 50
    entry["deps"][1]["md5"] = "0" * 32
    entry["outs"][0]["md5"] = "1" * 32 + ".dir"
    Path("dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"clean": entry}}))
    found = problems(audit("data/clean", "."), "lock", "clean")
    assert "param clean.min_words: dvc.lock has '50', the output was made with '3'" in found
    assert f"dep pipelines/clean.py: dvc.lock has md5 {'0' * 32}, the stage read " \
           f"{manifest['code']['pipelines/clean.py']['md5']}" in found
    assert any(p.startswith(f"out data/clean: dvc.lock has md5 {'1' * 32}.dir, the manifest's files give ") for p in found)
    assert problems(audit("data/raw", "."), "lock", "download") == ["dvc.lock has no entry for download"]


def test_manifests_hold_nothing_of_the_run(lineage: dict[str, str]) -> None:
    manifest = json.loads(Path("models/train/manifest.json").read_text())
    assert set(manifest) == {"format", "stage", "params", "code", "inputs", "outputs", "other_outputs"}
    assert lineage["train"] not in json.dumps(manifest)
    with sqlite3.connect("mlflow.db") as db:
        tags = dict(db.execute("select key, value from tags where run_uuid = ?", (lineage["train"],)).fetchall())
    assert tags["manifest_sha256"] == manifest_sha256("models/train")


# ---------------------------------------------------------------------------------- --reproduce

REPRO_DVC_YAML = """stages:
  download:
    cmd: python -m pipelines.fetch data/raw
    outs: [data/raw]
  copy:
    cmd: python -m pipelines.copy data/raw data/copy
    deps: [pipelines/copy.py, data/raw]
    params: [copy]
    outs: [data/copy]
    metrics: [{reports/metrics/copy.json: {cache: false}}]
"""
# a stand-in stage: reads its params from ./params.yaml and its input by relative path, like the real ones,
# and writes its manifest with the library's function
COPY_STAGE = """import json, sys
from pathlib import Path
import yaml
from scratchlm.lineage.manifest import describe_input, write_manifest
src, out = map(Path, sys.argv[1:])
times = yaml.safe_load(Path("params.yaml").read_text())["copy"]["times"]
text = (src / "a.txt").read_text() * times
(out / "part").mkdir(parents=True)
(out / "part" / "a.txt").write_text(text)
Path("reports/metrics/copy.json").write_text(json.dumps({"chars": len(text), "train_seconds": 0.1}))
write_manifest(out, stage="copy", params={"times": times}, inputs={"data/raw": describe_input(src)}, code={})
"""


@pytest.fixture
def repro_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """data/raw -> copy -> data/copy, recorded with real manifests; no MLflow, no git (a re-run needs neither)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text(REPRO_DVC_YAML)
    (tmp_path / "params.yaml").write_text("copy: {times: 5}\ntracking: {experiment: t}\n")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "copy.py").write_text(COPY_STAGE)
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "data/raw/a.txt").write_text("abc")
    write_manifest(Path("data/raw"), stage="download", params={"x": 1}, inputs={}, code={})
    (tmp_path / "data/copy/part").mkdir(parents=True)
    (tmp_path / "data/copy/part/a.txt").write_text("abc" * 2)  # recorded with times: 2, not today's 5
    write_manifest(Path("data/copy"), stage="copy", params={"times": 2}, inputs={"data/raw": describe_input("data/raw")},
                   code={})
    atomic_write_json("reports/metrics/copy.json", {"chars": 6, "train_seconds": 9.0})
    return tmp_path


def test_reproduce_reruns_with_the_recorded_params(repro_repo: Path) -> None:
    report = reproduce_stage("copy", repro_repo)
    assert report.reproduced, render_reproduce(report)
    assert [(r.path, r.status) for r in report.files] == [("data/copy/part/a.txt", SAME),
                                                          ("data/copy/manifest.json", SAME)]
    assert {r.path.split(":")[1]: r.status for r in report.metrics} == {"chars": SAME, "train_seconds": IGNORED}
    assert "reproduced: copy, 2 of 2 files identical, 0 differences" in render_reproduce(report)
    assert sorted(p.name for p in repro_repo.iterdir()) == ["data", "dvc.yaml", "params.yaml", "pipelines",
                                                            "reports"]  # the re-run wrote nothing here


def test_reproduce_fails_naming_the_file_when_the_record_differs(repro_repo: Path) -> None:
    edit_json(repro_repo / "data/copy/manifest.json", lambda m: m["params"].update(times=3))
    report = reproduce_stage("copy", repro_repo)
    assert not report.reproduced
    assert [(r.path, r.status) for r in report.files] == [("data/copy/part/a.txt", DIFF),
                                                          ("data/copy/manifest.json", DIFF)]
    assert [r.detail for r in report.metrics if r.status == DIFF] == ["recorded 6.0, re-run 9.0"]
    result = CliRunner().invoke(app, ["audit", "--reproduce", "copy", "--repo", str(repro_repo)])
    assert result.exit_code == 1 and "✗ differs" in result.output and "data/copy/part/a.txt" in result.output


def test_reproduce_stops_when_an_input_changed(repro_repo: Path) -> None:
    (repro_repo / "data/raw/a.txt").write_text("abd")
    report = reproduce_stage("copy", repro_repo)
    assert not report.reproduced and report.files == []  # not re-run
    assert report.inputs == ["data/raw: input changed since the stage read it (sha256 differs)"]
    assert "a re-run would prove nothing" in render_reproduce(report)
    assert "NOT reproduced: copy, not compared (1 input(s) changed)" in render_reproduce(report)


def test_reproduce_refuses_download_and_unknown_stages(repro_repo: Path) -> None:
    with pytest.raises(AuditError, match="cannot reproduce download: download fetches its sources"):
        reproduce_stage("download", repro_repo)
    result = CliRunner().invoke(app, ["audit", "--reproduce", "nope", "--repo", str(repro_repo)])
    assert result.exit_code == 2 and "unknown stage 'nope'" in result.output
    result = CliRunner().invoke(app, ["audit", "data/copy", "--reproduce", "copy", "--repo", str(repro_repo)])
    assert result.exit_code == 2


def test_training_metrics_compare_within_tolerance() -> None:
    name = "reports/metrics/pretrain.json:"
    assert metric_row(name + "val_loss", "pretrain", 5.80, 5.85).status == CLOSE
    assert metric_row(name + "val_loss", "pretrain", 5.80, 6.10).status == DIFF
    assert metric_row(name + "val_loss", "clean", 5.80, 5.85).status == DIFF  # data stages are exact
    assert metric_row(name + "val_ppl", "pretrain", math.exp(5.80), math.exp(5.85)).status == CLOSE  # log space
    assert metric_row(name + "steps", "pretrain", 20.0, 19.0).status == DIFF  # counts are exact
    assert metric_row(name + "tokens_per_s", "pretrain", 4000.0, 9.0).status == IGNORED
    assert metric_row(name + "benchmarks.piqa.seconds", "evaluate", 1.0, 2.0).status == IGNORED
    assert metric_row(name + "val_bpb", "pretrain", 4.1, None).status == DIFF


def test_reproduce_refuses_inputs_outside_the_repository(repro_repo: Path) -> None:
    def outside(manifest: dict[str, Any]) -> None:
        manifest["inputs"]["../elsewhere"] = manifest["inputs"]["data/raw"]

    edit_json(repro_repo / "data/copy/manifest.json", outside)
    with pytest.raises(AuditError, match="input ../elsewhere is not a path inside the repository"):
        reproduce_stage("copy", repro_repo)


def test_foreach_families_expand_as_dvc_names_their_members() -> None:
    from scratchlm.audit.walk import expand_families

    stages = {"scaling": {"foreach": "${scaling.rungs}", "do": {
        "cmd": "python -m pipelines.scaling ${key} models/scaling/${key}", "outs": [{"models/scaling/${key}": {}}]}},
        "pretrain": {"cmd": "python -m pipelines.pretrain"}}
    expanded = expand_families(stages, {"scaling": {"rungs": {"xs": {"n_embd": 16}, "xl": {"n_embd": 48}}}})
    assert list(expanded) == ["scaling@xs", "scaling@xl", "pretrain"]
    assert expanded["scaling@xl"] == {"cmd": "python -m pipelines.scaling xl models/scaling/xl",
                                      "outs": [{"models/scaling/xl": {}}]}


def test_a_stage_reading_several_sections_is_checked_key_by_key_against_dvc_lock() -> None:
    """A rung's dvc.lock params (`pretrain.lr`, …, `scaling.rungs.<rung>`, `scaling.compile`) are paths in its
    manifest."""
    from types import SimpleNamespace

    from scratchlm.audit.checks import param_disagreements

    made = parse_section("scaling", {"rungs": {"xs": {"n_layer": 1, "n_head": 2, "n_embd": 16}},
                                     "tokens_per_param": 0.25}).member(
        "xs", {"pretrain": {"lr": 0.008, "max_steps": 200}})[0].output_params()
    assert "max_steps" not in made["pretrain"], "not the rung's recipe: the ladder chooses it"
    subject = SimpleNamespace(stage="scaling@xs", manifest={"params": made})
    locked = {"pretrain.lr": 0.008, "pretrain.model.block_size": 256,
              "scaling.rungs.xs": {"n_layer": 1, "n_head": 2, "n_embd": 16}, "scaling.compile": False}
    assert param_disagreements(subject, {"params": {"params.yaml": locked}}) == []
    locked["scaling.rungs.xs"] = {"n_layer": 1, "n_head": 2, "n_embd": 24}
    locked["pretrain.lr"] = 0.004
    assert param_disagreements(subject, {"params": {"params.yaml": locked}}) == [
        "param pretrain.lr: dvc.lock has '0.004', the output was made with '0.008'",
        "param scaling.rungs.xs.n_embd: dvc.lock has '24', the output was made with '16'"]


def test_a_list_of_mappings_agrees_whatever_its_keys_order_and_differs_in_its_data() -> None:
    """scaling_fit.candidates: params.yaml's key order in dvc.lock and MLflow, sorted in the manifest's JSON."""
    from scratchlm.audit.checks import same_param

    written = str([{"n_layer": 3, "n_head": 4, "n_embd": 96}])
    assert same_param(written, str([{"n_embd": 96, "n_head": 4, "n_layer": 3}]))
    assert not same_param(written, str([{"n_embd": 128, "n_head": 4, "n_layer": 3}]))
    assert not same_param(written, None) and not same_param("0.1", "0.2") and same_param("a b", "a b")
