"""The ladder through the real DAG (debug profile): one cached stage per rung, the law and its prediction
written before pretrain, the rungs nested under the fit's MLflow run, the card's comparison, and a changed
rung re-running alone."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from repo_shell import sh

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
RUNGS = ["xs", "s", "xs_long", "m", "s_long", "l"]  # by compute: the debug ladder at two ratios


def test_the_ladder_predicts_pretrain_and_a_changed_rung_reruns_alone(debug_dag: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    root = Path(shutil.copytree(debug_dag[1], tmp_path / "repo", symlinks=True))
    law = json.loads((root / "reports/scaling/law.json").read_text())
    pretrain = json.loads((root / "reports/metrics/pretrain.json").read_text())
    assert [r["rung"] for r in law["rungs"]] == RUNGS  # the debug ladder grows in compute in this order
    assert law["law"]["form"] == "joint"  # two ratios: L(N, D), and the size the budget buys
    choice = law["choice"]
    assert choice["chosen"]["loss"] == min(c["loss"] for c in choice["candidates"])
    assert all(c["flops"] <= 3.0e9 for c in choice["candidates"])  # the debug profile's budget_flops
    assert json.loads((root / "reports/scaling/choice.json").read_text()) == {
        "chosen": None, "why": "pretrain.model.size is fixed"}  # the debug pretrain keeps its size
    p = law["prediction"]
    assert p["low"] <= p["pretrain_val_loss"] <= p["high"] and p["confidence"] == 0.9
    # the prediction is for exactly the run pretrain then made, computed from its params before it ran
    assert law["pretrain_planned"]["flops"] == pytest.approx(pretrain["flops_per_token"] * pretrain["tokens_seen"])
    assert law["pretrain_planned"]["tokens"] == pretrain["tokens_seen"]
    assert law["cost"]["share_of_pretrain_flops"] > 0 and set(law["tasks"]) == {
        "hellaswag", "piqa", "arc_easy", "arc_challenge", "winogrande", "sciq", "lambada"}
    report = json.loads((root / "reports/metrics/report.json").read_text())
    assert report["scaling_prediction_error"] == pytest.approx(
        abs(p["pretrain_val_loss"] - pretrain["val_loss"]) / pretrain["val_loss"])
    card = (root / "reports/model_card/model_card.md").read_text()
    assert "## Predictable scaling" in card and "![scaling law](figures/scaling_law.png)" in card
    assert "Pretrain kept its fixed size (`model.size: fixed`)" in card and "| chosen |" in card
    assert (root / "reports/model_card/figures/scaling_law.png").stat().st_size > 1000

    # every rung is its own MLflow run, nested under the fit's run (the UI's compare view of the ladder)
    fit_run = json.loads((root / "reports/runs/scaling_fit.json").read_text())["mlflow_run_id"]
    with sqlite3.connect(root / "mlflow.db") as db:
        parents = dict(db.execute("select r.name, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
                                  "where t.key = 'mlflow.parentRunId'").fetchall())
        sizes = db.execute("select r.name, p.key, p.value from runs r join params p on p.run_uuid = r.run_uuid "
                           "where p.key like 'rung.%'").fetchall()
        kind = db.execute("select t.value from experiment_tags t join experiments e on e.experiment_id = "
                          "t.experiment_id where e.name = 'scratchlm' and t.key = 'mlflow.experimentKind'").fetchall()
    assert {name: parents.get(name) for name in (f"scaling@{r}" for r in RUNGS)} == {
        f"scaling@{r}": fit_run for r in RUNGS}
    # every rung's size under the same keys (one column of the compare view), with the rung's own values
    logged = {(name, key): value for name, key, value in sizes}
    for rung in RUNGS:
        made = json.loads((root / f"models/scaling/{rung}/rung.json").read_text())
        assert {key: logged.get((f"scaling@{rung}", f"rung.{key}")) for key in ("n_layer", "n_embd", "params",
                "tokens", "flops")} == {key: str(made[key]) for key in ("n_layer", "n_embd", "params", "tokens",
                                                                        "flops")}
    assert kind == [("custom_model_development",)]  # the UI opens the experiment on its runs table

    # a changed ladder re-runs the rungs whose params changed, the fit and what reads it: nothing else (a fixed
    # pretrain's choice.json holds the same bytes whatever the ladder says)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["scaling"]["rungs"]["m"]["n_embd"] = 40
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = set(re.findall(r"Running stage '([\w@-]+)'", sh(root, "dvc", "repro").stdout))
    assert ran == {"scaling@m", "scaling_fit", "report"}, ran
    assert json.loads((root / "models/scaling/m/rung.json").read_text())["n_embd"] == 40
    audit = sh(root, "scratchlm", "audit", check=False)
    assert audit.returncode == 0, audit.stdout[-3000:]
    assert "scaling@m" in audit.stdout and "scaling_fit" in audit.stdout


def test_a_rung_is_reproduced_from_its_manifest(debug_dag: tuple[Path, Path], tmp_path: Path) -> None:
    """`scratchlm audit --reproduce scaling@<rung>`: the rung's params nest by section, and re-run from them."""
    root = Path(shutil.copytree(debug_dag[1], tmp_path / "repo", symlinks=True))
    result = sh(root, "scratchlm", "audit", "--reproduce", "scaling@xs", check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_a_from_ladder_pretrain_trains_the_size_the_budget_buys(debug_dag: tuple[Path, Path], tmp_path: Path) -> None:
    """model.size from_ladder: scaling_fit writes its choice, pretrain trains that shape for that many steps,
    the card says so, and the audit walks from the card through pretrain to the fit and every rung."""
    root = Path(shutil.copytree(debug_dag[1], tmp_path / "repo", symlinks=True))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pretrain"]["model"] = {key: value for key, value in params["pretrain"]["model"].items()
                                   if key not in ("n_layer", "n_head", "n_embd")} | {"size": "from_ladder"}
    del params["pretrain"]["max_steps"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "commit", "-qam", "from_ladder")
    ran = set(re.findall(r"Running stage '([\w@-]+)'", sh(root, "dvc", "repro").stdout))
    assert {"scaling_fit", "pretrain", "report"} <= ran
    assert not {stage for stage in ran if stage.startswith("scaling@")}, "the size is not the rungs' recipe"
    chosen = json.loads((root / "reports/scaling/choice.json").read_text())["chosen"]
    law = json.loads((root / "reports/scaling/law.json").read_text())
    assert chosen == {key: law["choice"]["chosen"][key] for key in ("n_layer", "n_head", "n_embd")} | {
        "max_steps": law["choice"]["chosen"]["steps"]}
    pretrain = json.loads((root / "reports/metrics/pretrain.json").read_text())
    config = json.loads((root / "models/pretrain/config.json").read_text())
    assert {key: config[key] for key in ("n_layer", "n_head", "n_embd")} == pretrain["shape"] == {
        key: chosen[key] for key in ("n_layer", "n_head", "n_embd")}
    assert pretrain["steps"] == chosen["max_steps"]
    assert law["pretrain_planned"]["tokens"] == pretrain["tokens_seen"]  # the prediction is for the run made
    manifest = json.loads((root / "models/pretrain/manifest.json").read_text())
    assert manifest["params"]["model"]["size"] == "from_ladder" and manifest["params"]["max_steps"] is None
    assert "reports/scaling/choice.json" in manifest["inputs"]
    card = (root / "reports/model_card/model_card.md").read_text()
    assert "Pretrain trained it (`model.size: from_ladder`)" in card and "(the ladder's choice)" in card
    audit = sh(root, "scratchlm", "audit", check=False)
    assert audit.returncode == 0, audit.stdout[-3000:]
