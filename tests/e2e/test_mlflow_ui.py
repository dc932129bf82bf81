"""The MLflow UI in a real browser (headless chromium), on the store the debug DAG filled: what a person opening
the UI sees.

- The experiment page of `scratchlm` lists the stage runs by name (`pretrain`, `tokenize`): the runs the
  REST API returns are rows of the UI's runs table.
- The compare view of the ladder's rungs shows every rung's size under the one key `rung.n_embd`, as a row of
  its parameters table and as the x axis of its scatter plot, against the rungs' `val_loss`: the plot's points
  are the rungs' (size, loss) pairs.

MLflow 3.17's UI opens an experiment on its GenAI overview unless told the "Model training" workflow: that
choice is the URL's `workflowType` (the sidebar's GenAI / Model training switch sets it), else the browser's
saved one, and not the experiment's `mlflow.experimentKind` tag. The test asks for it in the URL, as the switch does.

The server (`mlflow server` on `<repo>/mlflow.db`) runs in the test's own folder and is stopped by its PID.
Screenshots: `experiment.png`, `compare.png`, `compare-params.png` in the tests' tmp_path (paths printed).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import api, browser_page, chromium_path, mlflow_server, query, screenshot_at_exit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first user of `repo` runs the DAG (minutes)

EXPERIMENT = "scratchlm"
RUNG_SIZE = "rung.n_embd"  # every rung logs its size under the same keys (rung.n_layer, rung.n_embd, ...)
LOSS = "val_loss"  # what each rung logs as its loss on the validation split
STAGES = ("pretrain", "tokenize")
WAIT_MS = 30_000
# the MLflow Assistant's chat panel opens by itself on a first visit and hides a third of the page: closed,
# as a user would have left it
QUIET = {"mlflow.assistant.panelOpen_v1": "false", "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true"}


@pytest.fixture(scope="module")
def ui(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLflow server on the DAG's store; its URL. Nothing of it is written into the repository."""
    pytest.importorskip("playwright.sync_api")
    chromium_path()
    with mlflow_server(f"sqlite:///{repo / 'mlflow.db'}", tmp_path_factory.mktemp("mlflow-ui")) as uri:
        yield uri


def experiment_id(uri: str) -> str:
    return api(uri, "experiments/get-by-name?" + query(experiment_name=EXPERIMENT))["experiment"]["experiment_id"]


def latest_by_stage(uri: str, experiment: str, filter_string: str) -> dict[str, dict[str, Any]]:
    """The newest run of each stage (tag `stage`) that the filter selects (other e2e tests may re-run stages)."""
    found: dict[str, dict[str, Any]] = {}
    body = {"experiment_ids": [experiment], "filter": filter_string, "max_results": 1000,
            "order_by": ["attributes.start_time DESC"]}
    for run in api(uri, "runs/search", body).get("runs", []):
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        found.setdefault(tags.get("stage", ""), run)
    found.pop("", None)
    return found


def params(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def test_experiment_page_lists_the_stage_runs(ui: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    experiment = experiment_id(ui)
    runs = {stage: run for s in STAGES for stage, run in latest_by_stage(ui, experiment, f"tags.stage = '{s}'").items()}
    assert set(runs) == set(STAGES), f"the store has runs of {sorted(runs)}, not of every stage in {STAGES}"
    with browser_page(tmp_path / "profile", height=1200, local_storage=QUIET) as page, \
            screenshot_at_exit(page, tmp_path / "experiment.png"):
        page.goto(f"{ui}/#/experiments/{experiment}?workflowType=machine_learning")
        expect(page.get_by_text("matching runs")).to_be_visible(timeout=WAIT_MS)
        for stage, run in runs.items():
            assert run["info"]["run_name"] == stage
            # the table's row of that very run (ag-grid's row-id is the run id) shows the stage's name as its link
            row = page.locator(f'[role=row][row-id="{run["info"]["run_id"]}"]')
            expect(row.get_by_role("link", name=stage, exact=True)).to_be_visible(timeout=WAIT_MS)


def test_compare_view_of_the_rungs_plots_loss_against_size(ui: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    experiment = experiment_id(ui)
    rungs = list(latest_by_stage(ui, experiment, "tags.stage LIKE 'scaling@%'").values())
    assert len(rungs) >= 2, "the ladder has fewer than two rung runs to compare"
    for run in rungs:
        if RUNG_SIZE not in params(run):
            pytest.fail(f"{run['info']['run_name']} logs no param {RUNG_SIZE}: {sorted(params(run))}")
        if LOSS not in metrics(run):
            pytest.fail(f"{run['info']['run_name']} logs no metric {LOSS}: {sorted(metrics(run))}")
    ids = [run["info"]["run_id"] for run in rungs]
    sizes = [params(run)[RUNG_SIZE] for run in rungs]
    losses = [metrics(run)[LOSS] for run in rungs]
    # the UI's own route (Routes.getCompareRunPageRoute): JSON lists of run ids and experiment ids
    route = "runs=" + urllib.parse.quote(json.dumps(ids)) + "&experiments=" + urllib.parse.quote(json.dumps([experiment]))

    with browser_page(tmp_path / "profile", local_storage=QUIET) as page:
        with screenshot_at_exit(page, tmp_path / "compare.png"):
            page.goto(f"{ui}/#/compare-runs?{route}")
            expect(page.get_by_text(f"Comparing {len(rungs)} Runs from 1 Experiment")).to_be_visible(timeout=WAIT_MS)

            # parameters table: one row `rung.n_embd`, one cell per rung
            header = page.get_by_role("rowheader", name=RUNG_SIZE, exact=True)
            expect(header).to_be_visible(timeout=WAIT_MS)
            row = page.get_by_role("row").filter(has=header)
            assert sorted(row.locator("td").all_inner_texts()) == sorted(sizes)

            # scatter plot: x = rung.n_embd, y = val_loss, one point per rung
            page.get_by_role("tab", name="Scatter Plot").click()
            for axis, name in (("x", RUNG_SIZE), ("y", LOSS)):
                page.locator(f"#{axis}-axis-selector").click()
                page.get_by_role("option", name=name, exact=True).click()
                expect(page.locator(f"#{axis}-axis-selector")).to_have_text(name)
            plot = page.locator("[role=tabpanel][data-state=active] .js-plotly-plot")
            expect(plot.locator(".xtitle")).to_have_text(RUNG_SIZE, timeout=WAIT_MS)
            expect(plot.locator(".ytitle")).to_have_text(LOSS, timeout=WAIT_MS)
            # the plotted points themselves (plotly keeps them on its element): each rung's (size, loss)
            plotted = plot.evaluate("plot => plot.data.map(trace => ({x: trace.x, y: trace.y}))")
            points = sorted((str(x), y) for trace in plotted for x, y in zip(trace["x"], trace["y"], strict=True))
            expected = sorted(zip(sizes, losses, strict=True))
            assert [x for x, _ in points] == [x for x, _ in expected]
            assert [y for _, y in points] == pytest.approx([y for _, y in expected])

        header.scroll_into_view_if_needed()  # the parameters table, further down the page
        with screenshot_at_exit(page, tmp_path / "compare-params.png"):
            pass
