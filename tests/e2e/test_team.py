"""Two people, one MLflow server and one DVC remote: what a team does, with real parts on 127.0.0.1.

Person A points the project at the team's tracking server (PostgreSQL backend store, proxied artifacts),
runs the DAG up to the classifier, commits what the run made and pushes the data to the shared DVC remote.
Person B clones in another folder with no local MLflow store, pulls, audits (every run is checked on the
server), then runs one experiment; the server holds both runs of the fine-tune, comparable over REST.

A runs `dvc repro finetune_classifier` (the DAG's first eight stages), not the whole debug DAG: the whole
one runs in tests/e2e/test_pipeline.py, and a second run of it here would cost CI minutes the team path
does not need.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest
import requests
import yaml
from repo_shell import copy_repo, sh

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
TARGET, OUTPUT = "finetune_classifier", "models/classifier"


def point_at(root: Path, uri: str) -> None:
    """params.yaml's `tracking.uri`: the one place every stage, the audit and the CLI read it from."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tracking"]["uri"] = uri
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def search(uri: str, query: str) -> list[dict]:
    """MLflow's REST API, as any client of the server would call it."""
    experiment = requests.get(f"{uri}/api/2.0/mlflow/experiments/get-by-name",
                              params={"experiment_name": "scratchlm"}, timeout=30).json()["experiment"]
    found = requests.post(f"{uri}/api/2.0/mlflow/runs/search", timeout=30,
                          json={"experiment_ids": [experiment["experiment_id"]], "filter": query}).json()
    return found.get("runs", [])


def params_of(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def tags_of(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_a_second_person_pulls_audits_and_compares_against_the_team_server(team_server: str, tmp_path: Path) -> None:
    remote = tmp_path / "dvc-remote"
    a = copy_repo(tmp_path / "a")
    point_at(a, team_server)
    sh(a, "dvc", "remote", "add", "--default", "team", str(remote))
    sh(a, "git", "add", "-A")
    sh(a, "git", "commit", "-qm", "track to the team's server, push to the team's remote")

    sh(a, "dvc", "repro", TARGET)
    assert not (a / "mlflow.db").exists(), "every run went to the server"
    record = json.loads((a / f"reports/runs/{TARGET}.json").read_text())
    assert record["mlflow_store"]["kind"] == "server" and record["mlflow_store"]["uri"] == team_server
    sh(a, "git", "add", "-A")
    checked = sh(a, "scratchlm", "publish-check", "--staged")  # the records about to be committed: clean tree
    # the data stages, the ladder (six rungs and the fit: pretrain reads its choice.json), pretrain, the target
    assert "15 run record(s) made from committed code" in checked.stdout, checked.stdout
    sh(a, "git", "commit", "-qm", "outputs of the run")
    sh(a, "dvc", "push")

    b = tmp_path / "b"
    sh(tmp_path, "git", "clone", "-q", str(a), str(b))
    for key, value in (("user.email", "b@example.com"), ("user.name", "b")):
        sh(b, "git", "config", key, value)
    sh(b, "dvc", "pull", "--with-deps", TARGET)
    assert "up to date" in sh(b, "dvc", "status", TARGET).stdout
    audit = sh(b, "scratchlm", "audit", OUTPUT, "--strict", check=False)
    assert audit.returncode == 0, audit.stdout[-4000:]
    report = json.loads((b / "reports/audit.json").read_text())
    checked = {node["stage"]: next(c["status"] for c in node["checks"] if c["name"] == "mlflow")
               for node in report["nodes"].values()}
    assert len(checked) == 15 and set(checked.values()) == {"ok"}, checked  # every run, on the server
    assert report["unchecked"] == {} and not (b / "mlflow.db").exists()

    # B's experiment: one fine-tune param changed; the server holds both runs of the stage, side by side
    sh(b, "dvc", "exp", "run", "-n", "more-epochs", "-S", f"{TARGET}.epochs=2", TARGET)
    runs = search(team_server, f"tags.stage = '{TARGET}'")
    assert len(runs) == 2, runs
    by_epochs = {params_of(run)["epochs"]: run for run in runs}
    assert set(by_epochs) == {"1", "2"}
    assert tags_of(by_epochs["2"]).get("dvc_exp") == "more-epochs" and "dvc_exp" not in tags_of(by_epochs["1"])
    # ... and the experiment in DVC names its MLflow run: the run record is part of the experiment's commit
    shown = sh(b, "git", "show", f"{experiment_ref(b, 'more-epochs')}:reports/runs/{TARGET}.json").stdout
    assert json.loads(shown)["mlflow_run_id"] == by_epochs["2"]["info"]["run_id"]


def experiment_ref(root: Path, name: str) -> str:
    refs = sh(root, "git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
    return next(ref for ref in refs if re.search(rf"/{re.escape(name)}$", ref))


def on_machine_b(*cmd: str) -> tuple[str, ...]:
    """`cmd` run as another machine would: its own host name (a UTS namespace, as root), so the stores the
    committed records name as local to this machine are another machine's."""
    return ("unshare", "--uts", "sh", "-c", 'hostname laptop-b && exec "$@"', "sh", *cmd)


def test_a_clean_clone_elsewhere_audits_clean_saying_which_runs_it_cannot_reach(debug_dag: tuple[Path, Path],
                                                                              tmp_path: Path) -> None:
    """The committed run was made on another machine, whose local MLflow store this one cannot reach. A clone
    here gets the outputs, re-runs what it re-runs into its own empty store, and the audit passes: the other
    runs are listed as not checked, everything else about them (bytes, inputs, lock, dvc, record, git)
    verified; `--strict` fails on them."""
    a = Path(shutil.copytree(debug_dag[1], tmp_path / "a", symlinks=True))
    sh(a, "git", "add", "-A")
    sh(a, "git", "commit", "-qm", "outputs of the run")
    b = tmp_path / "b"
    sh(tmp_path, "git", "clone", "-q", str(a), str(b))
    sh(b, "dvc", "remote", "add", "--local", "a-cache", str(a / ".dvc" / "cache"))  # A's cache as the remote
    sh(b, "dvc", "pull", "-r", "a-cache")
    assert not (b / "mlflow.db").exists()

    ran = sh(b, *on_machine_b("dvc", "repro", "--force", "--single-item", "report"))
    assert "Running stage 'report'" in ran.stdout
    assert json.loads((b / "reports/runs/report.json").read_text())["mlflow_store"]["host"] == "laptop-b"
    audit = sh(b, *on_machine_b("scratchlm", "audit"), check=False)
    assert audit.returncode == 0, audit.stdout[-4000:]
    report = json.loads((b / "reports/audit.json").read_text())
    assert "report" not in report["unchecked"] and len(report["unchecked"]) == len(report["nodes"]) - 1
    for node in report["nodes"].values():
        statuses = {c["name"]: c["status"] for c in node["checks"]}
        assert statuses["mlflow"] == ("ok" if node["stage"] == "report" else "info"), node
        assert {statuses[name] for name in ("outputs", "inputs", "lock", "dvc", "record")} == {"ok"}, node
    assert re.search(rf"i {len(report['unchecked'])} MLflow run\(s\) not checked, in stores this audit cannot "
                     "reach", audit.stdout), audit.stdout[-3000:]
    assert "is in a local store this audit cannot reach" in audit.stdout
    assert f"on machine {socket.gethostname()!r}" in audit.stdout  # where those runs are
    strict = sh(b, *on_machine_b("scratchlm", "audit", "--strict"), check=False)
    assert strict.returncode == 1 and "audit FAILED" in strict.stdout
