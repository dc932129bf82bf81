"""The `validate` stage: Great Expectations suites over every data set the pipeline trains or scores on.

The suites are data, not code: `expectations/<frame>.json`, one Great Expectations 1.x suite per
frame, reviewed like code and tracked by DVC as a dependency. Thresholds that depend on the data
profile are `{"$PARAMETER": "<ValidateParams field>"}` placeholders that GX substitutes at run time
from `params.validate` (its suite parameters), so tightening a bound is a params change, not a code
change. Every expectation states in its `meta` whether it is `critical` (a failure stops the
pipeline) or not (a warning that is only reported); `meta.enabled_by: <field>` switches an
expectation off while that params field is empty (e.g. no `allowed_sources` configured).

Frames (built by `load_validation_frames`; derived columns in brackets):

- `raw_documents`, `clean_documents`, `dedup_documents`: `id, text, source, meta` [`split`]
- `classification`: `id, text, label, source`
- `label_shares`: one row per label of the classification set (and per label `label_shares` bounds):
  `label, share, min_share, max_share` (bounds from `params.validate.label_shares`, else 0 and 1)
- `instructions`: `id, instruction, input, output, category, source`
- `preferences`: `id, prompt, input, chosen, rejected, source` [`same_answer`]
- `benchmarks`: `id, task, query, gold, source` [`n_choices`, `n_requests`, `min_choice_chars`]

Caller-facing behaviour: `validate_frames` never raises because the *data* is bad; it writes
`results.json` and the Data Docs site, and returns a summary. The stage calls `raise_on_critical`
once the reports are saved, so a failing run still leaves the reports that explain it::

    summary = validate_frames(frames, suites_dir, out_dir, params)
    ...  # save out_dir, metrics, manifest
    raise_on_critical(summary)

Everything runs in an ephemeral (in-memory) GX context: no `gx/` project folder, no analytics and
no network calls; the only files written are those under `out_dir`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# Belt and braces: GX 1.24 has no usage statistics; earlier 1.x releases read this to turn them off.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration  # noqa: E402

from scratchlm.config.data import ValidateParams
from scratchlm.data.roles import ROLE_FRAMES, source_dirs, source_roles  # noqa: E402
from scratchlm.io import atomic_write_json, read_jsonl  # noqa: E402

#: Every frame a suite may exist for, in report order.
FRAMES = ("raw_documents", "clean_documents", "dedup_documents", "classification", "label_shares", "instructions",
          "preferences", "benchmarks")
#: The frames of the pretraining corpus (what the tokenizer and the language model learn from).
CORPUS_FRAMES = ("raw_documents", "clean_documents", "dedup_documents")
SPLITS = ("train", "val", "test")
EXAMPLES = 5  # offending values kept per expectation (GX's partial_unexpected_count)
MAX_VALUE_CHARS = 120  # long texts are cut in results.json
MESSAGE_VALUE_CHARS = 40  # ... and cut shorter in one-line messages
SUITE_KEYS = {"name", "id", "notes", "meta", "expectations"}
DOCS_SITE = "local_site"
#: The run time GX shows in the Data Docs: fixed, so the pages (a DVC output) do not change from run to run.
DOCS_TIME = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
GX_STAMP = re.compile(r"\b\d{8}T\d{6}\.\d{6}Z\b")
GX_BLOCK_ID = re.compile(r"(collapse-body-)([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


class DataValidationError(Exception):
    """A critical expectation failed; the message is one line naming the suite, expectation and values."""


# ------------------------------------------------------------------------------------- loading


def load_validation_frames(raw_dir: Path, clean_dir: Path, dedup_dir: Path,
                           label_shares: dict[str, tuple[float, float]] | None = None) -> dict[str, pd.DataFrame]:
    """One DataFrame per suite, from the on-disk outputs of download, clean and dedup.

    Only frames whose files exist are returned (a disabled fine-tune set or benchmark source simply
    has no frame); `validate_frames(required=...)` decides whether an absent frame is an error.
    Files are read in sorted order, so row order (and so every reported example) is deterministic.
    """
    frames: dict[str, pd.DataFrame] = {}
    by_role: dict[str, list[Path]] = {}
    folders = source_dirs(Path(raw_dir))
    for name, role in source_roles(Path(raw_dir)).items():
        by_role.setdefault(role, []).append(folders[name])
    if docs := _document_files(by_role.get("pretrain", [])):
        frames["raw_documents"] = _documents(docs)
    clean_dir = Path(clean_dir)
    if clean_dir.is_dir() and (docs := _document_files(sorted(p for p in clean_dir.iterdir() if p.is_dir()))):
        frames["clean_documents"] = _documents(docs)
    dedup_dir = Path(dedup_dir)
    if docs := [(path, split) for split in SPLITS for path in sorted((dedup_dir / split).glob("*.parquet"))]:
        frames["dedup_documents"] = _documents(docs)
    for role, build in (
        ("classification", _classification_frame),
        ("instruction", _instruction_frame),
        ("preference", _preference_frame),
        ("benchmark", _benchmark_frame),
    ):
        if records := _jsonl_records(by_role.get(role, [])):
            frames[ROLE_FRAMES[role]] = build(records)
    if "classification" in frames:
        frames["label_shares"] = label_share_frame(frames["classification"], label_shares or {})
    return frames


def _document_files(folders: list[Path]) -> list[tuple[Path, str | None]]:
    """Parquet shards of each folder, with no split override (the split comes from `meta`)."""
    return [(path, None) for folder in folders for path in sorted(folder.glob("*.parquet"))]


def _documents(files: list[tuple[Path, str | None]]) -> pd.DataFrame:
    """Concatenate document shards; `split` is the folder's split if given, else `meta.split`.

    Dedup moves training documents to `val` without rewriting `meta`, so there the folder is the truth.
    """
    columns = ["id", "text", "source", "meta"]
    tables = [pq.read_table(path, columns=columns) for path, _ in files]
    frame = pa.concat_tables(tables).to_pandas()
    overrides = [
        split for (_, split), table in zip(files, tables, strict=True) for _ in range(table.num_rows)
    ]
    frame["split"] = [
        override or _meta_split(meta) for override, meta in zip(overrides, frame["meta"], strict=True)
    ]
    return frame


def _meta_split(meta: Any) -> str | None:
    """`meta.split`, or None when meta is missing or not a JSON object (the suite then reports it)."""
    try:
        value = json.loads(meta)
    except (TypeError, ValueError):
        return None
    return value.get("split") if isinstance(value, dict) else None


def _jsonl_records(folders: list[Path]) -> list[dict[str, Any]]:
    """All records of every `*.jsonl` in the folders, tagged with their source folder's name."""
    return [
        {**record, "source": folder.name}
        for folder in folders
        for path in sorted(folder.glob("*.jsonl"))
        for record in read_jsonl(path)
    ]


def _classification_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(records)


def label_share_frame(classification: pd.DataFrame, bounds: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """Each label's share of the set beside its [min, max] bounds: a label named in the bounds and absent
    from the data has share 0, so a set without it fails its minimum."""
    labels = classification["label"].dropna().astype(str) if "label" in classification else pd.Series([], dtype=str)
    shares = labels.value_counts(normalize=True) if len(labels) else pd.Series(dtype=float)
    names = sorted(set(shares.index) | set(bounds))
    return pd.DataFrame({"label": names, "share": [float(shares.get(name, 0.0)) for name in names],
                         "min_share": [float(bounds.get(name, (0.0, 1.0))[0]) for name in names],
                         "max_share": [float(bounds.get(name, (0.0, 1.0))[1]) for name in names]})


def _instruction_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(records)


def _preference_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The pairs plus `same_answer`: whether chosen and rejected are one text (after strip), which a suite
    can check per row (GX compares columns, not stripped strings), naming the pair that teaches nothing."""
    frame = pd.DataFrame.from_records(records)
    frame["same_answer"] = [_same_answer(record.get("chosen"), record.get("rejected")) for record in records]
    return frame


def _same_answer(chosen: Any, rejected: Any) -> bool:
    return isinstance(chosen, str) and isinstance(rejected, str) and chosen.strip() == rejected.strip()


def _benchmark_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Scalar columns plus counts derived from the list columns, which are dropped.

    GX expectations work on scalar cells, and list cells would also slow GX's batch fingerprint.
    """
    frame = pd.DataFrame.from_records(
        [
            {key: value for key, value in record.items() if key not in ("choices", "requests")}
            for record in records
        ]
    )
    frame["n_choices"] = [_count(record.get("choices")) for record in records]
    frame["n_requests"] = [_count(record.get("requests")) for record in records]
    frame["min_choice_chars"] = [
        min((len(str(c)) for c in record.get("choices") or []), default=0) for record in records
    ]
    return frame


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


# ------------------------------------------------------------------------------------- suites


def load_suite(path: Path, params: ValidateParams) -> tuple[gx.ExpectationSuite, list[dict[str, Any]]]:
    """Read one suite file strictly; returns the suite and the expectations `enabled_by` switched off.

    GX's own `ExpectationSuite(**json)` logs and *drops* an invalid expectation; a typo in a suite
    must not silently weaken validation, so every expectation is built here and errors are raised.
    """
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    if unknown := set(spec) - SUITE_KEYS:
        raise ValueError(f"{path}: unknown suite keys {sorted(unknown)}")
    if spec.get("name") != Path(path).stem:
        raise ValueError(f"{path}: suite name {spec.get('name')!r} must match the file name")
    expectations, disabled = [], []
    for index, item in enumerate(spec.get("expectations", [])):
        where = f"{path}: expectation {index} ({item.get('type')})"
        meta = item.get("meta") or {}
        if not isinstance(meta.get("critical"), bool):
            raise ValueError(f"{where}: meta.critical must be true or false")
        _check_parameters(item.get("kwargs", {}), params, where)
        switch = meta.get("enabled_by")
        if switch is not None and not _parameter(params, switch, where):
            disabled.append(
                {"type": item["type"], "kwargs": item.get("kwargs", {}), "reason": f"{switch} is empty"}
            )
            continue
        try:
            expectations.append(ExpectationConfiguration(**item).to_domain_obj())
        except Exception as error:  # GX raises several unrelated types for a bad configuration
            raise ValueError(f"{where}: invalid ({_first_line(error)})") from None
    suite = gx.ExpectationSuite(
        name=spec["name"],
        expectations=expectations,
        meta=spec.get("meta"),
        notes=spec.get("notes"),
    )
    return suite, disabled


def _check_parameters(value: Any, params: ValidateParams, where: str) -> None:
    """Every `$PARAMETER` that is a plain name must be a ValidateParams field (catches typos early)."""
    if isinstance(value, dict):
        name = value.get("$PARAMETER")
        if isinstance(name, str) and name.isidentifier():
            _parameter(params, name, where)
        for item in value.values():
            _check_parameters(item, params, where)
    elif isinstance(value, list):
        for item in value:
            _check_parameters(item, params, where)


def _parameter(params: ValidateParams, name: str, where: str) -> Any:
    if name not in type(params).model_fields:
        raise ValueError(f"{where}: unknown parameter '{name}' (not a field of params.validate)")
    return getattr(params, name)


# ------------------------------------------------------------------------------------- running


def validate_frames(
    frames: dict[str, pd.DataFrame],
    suites_dir: Path,
    out_dir: Path,
    params: ValidateParams,
    *,
    required: Iterable[str] = (),
) -> dict[str, Any]:
    """Run each frame's suite; write `results.json`, `corpus.json` and `data_docs/` into out_dir; return a
    summary.

    `corpus.json` holds the corpus suites' reports alone (raw, clean and dedup documents): the gate the
    tokenizer trains behind, whose bytes a change to a fine-tune or benchmark set does not touch.

    Frames without a suite are a programming error (ValueError). Frames named in `required` that are
    missing raise DataValidationError before anything runs (there is nothing to report on). Failed
    expectations never raise here: see `raise_on_critical`.
    """
    suites_dir, out_dir = Path(suites_dir), Path(out_dir).resolve()  # GX wants absolute paths
    if unknown := sorted(set(frames) - {p.stem for p in suites_dir.glob("*.json")}):
        raise ValueError(f"no suite in {suites_dir} for frame(s) {unknown}")
    if missing := [name for name in required if name not in frames]:
        raise DataValidationError(f"{missing[0]}: no data found, but the frame is required")
    reports: dict[str, Any] = {}
    with _quiet_gx():
        context = _context(out_dir / "data_docs")
        source = context.data_sources.add_pandas("scratchlm")
        for name in sorted(frames, key=_frame_order):
            suite, disabled = load_suite(suites_dir / f"{name}.json", params)
            result = _run_suite(context, source, suite, frames[name], params)
            reports[name] = _suite_report(suite, result, disabled, len(frames[name]))
        context.build_data_docs(site_names=[DOCS_SITE])
    if not (out_dir / "data_docs" / "index.html").is_file():
        raise RuntimeError(f"Great Expectations wrote no Data Docs index under {out_dir / 'data_docs'}")
    unstamp_docs(out_dir / "data_docs")
    atomic_write_json(
        out_dir / "results.json",
        {
            "great_expectations_version": gx.__version__,
            "params": params.model_dump(mode="json"),
            "suites": reports,
        },
    )
    corpus = {name: report for name, report in reports.items() if name in CORPUS_FRAMES}
    atomic_write_json(out_dir / "corpus.json", {"great_expectations_version": gx.__version__, "suites": corpus,
                                                "success": _summarise(corpus)["success"]})
    return _summarise(reports)


def _frame_order(name: str) -> tuple[int, str]:
    return (FRAMES.index(name) if name in FRAMES else len(FRAMES), name)


@contextlib.contextmanager
def _quiet_gx() -> Iterator[None]:
    """Silence GX's INFO/WARNING logging and its Python warnings for the duration of a run only."""
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")
            yield
    finally:
        logger.setLevel(level)


def _context(docs_dir: Path) -> Any:
    """An in-memory GX context whose only Data Docs site is a local folder; no analytics, no progress bars."""
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={DOCS_SITE: site},
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _run_suite(
    context: Any, source: Any, suite: gx.ExpectationSuite, frame: pd.DataFrame, params: ValidateParams
) -> Any:
    """Validate one frame through a ValidationDefinition, so the result lands in the store Data Docs reads."""
    batch = source.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=suite)
    )
    result_format = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": EXAMPLES,
        "unexpected_index_column_names": (suite.meta or {}).get("unexpected_index_column_names", []),
    }
    return definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=params.model_dump(),
        result_format=result_format,
        run_id=RunIdentifier(run_name="validate", run_time=DOCS_TIME),
    )


def unstamp_docs(docs_dir: Path) -> None:
    """Make the Data Docs a function of the results alone, so validate's output hashes the same on every run.

    GX stamps the pages with the run time (fixed to DOCS_TIME above), each suite's validation time and a
    cache-busting `?d=<now>` on asset URLs, all in its `20261129T185654.845423Z` format, and gives each
    collapsible block a random UUID: the stamps become DOCS_TIME, the UUIDs a counter per page (the run
    record keeps the real times).
    """
    fixed = DOCS_TIME.strftime("%Y%m%dT%H%M%S.%fZ")
    for page in sorted(docs_dir.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        new = _number_blocks(GX_STAMP.sub(fixed, text))
        if new != text:
            page.write_text(new, encoding="utf-8")


def _number_blocks(text: str) -> str:
    """Each random block UUID of a page replaced by `block-0000`, `block-0001`, … in order of appearance."""
    ids: dict[str, str] = {}
    return GX_BLOCK_ID.sub(lambda m: m.group(1) + ids.setdefault(m.group(2), f"block-{len(ids):04d}"), text)


# ------------------------------------------------------------------------------------- reporting


def _suite_report(suite: gx.ExpectationSuite, result: Any, disabled: list[dict[str, Any]], rows: int) -> dict:
    """A deterministic, JSON-safe view of one suite result: no run ids, timestamps or batch ids.

    GX reorders results by the metrics it computes, so they are put back into the suite's order.
    """
    order = {expectation.id: index for index, expectation in enumerate(suite.expectations)}
    results = sorted(result.results, key=lambda r: order.get(r.expectation_config.id, len(order)))
    index_columns = (suite.meta or {}).get("unexpected_index_column_names", [])
    return {
        "success": bool(result.success),
        "rows": rows,
        "statistics": _jsonable(dict(result.statistics)),
        "expectations": [_expectation_report(r, index_columns) for r in results],
        "disabled": _jsonable(disabled),
    }


def _expectation_report(result: Any, index_columns: list[str]) -> dict[str, Any]:
    config, details = result.expectation_config, result.result or {}
    return _jsonable(
        {
            "type": config.type,
            "kwargs": {key: value for key, value in config.kwargs.items() if key != "batch_id"},
            "critical": bool((config.meta or {}).get("critical")),
            "success": bool(result.success),
            "unexpected_count": details.get("unexpected_count"),
            "unexpected_percent": details.get("unexpected_percent"),
            "observed_value": details.get("observed_value"),
            "partial_unexpected_list": details.get("partial_unexpected_list"),
            "partial_unexpected_index": _index_values(
                details.get("partial_unexpected_index_list"), index_columns
            ),
            "exception": _exception_message(result.exception_info),
        }
    )


def _exception_message(info: Any) -> str | None:
    """The first exception GX caught while computing an expectation (e.g. a missing column).

    `exception_info` is either one `{raised_exception, exception_message, ...}` record or a dict of them
    keyed by metric id, depending on where the error happened.
    """
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return _first_line(info.get("exception_message") or "unknown error")
    nested = (_exception_message(value) for value in info.values() if isinstance(value, dict))
    return next((message for message in nested if message), None)


def _index_values(rows: Any, columns: list[str]) -> list[Any] | None:
    """The identifying columns of the offending rows (GX also repeats the checked value; dropped here)."""
    if not rows or not columns or not isinstance(rows, list):
        return None
    picked = [{c: row.get(c) for c in columns} if isinstance(row, dict) else row for row in rows]
    return [row[columns[0]] for row in picked] if len(columns) == 1 else picked


def _jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars unwrapped, tuples as lists, NaN as null, long strings cut."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        with contextlib.suppress(TypeError, ValueError):
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "…"
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def _summarise(reports: dict[str, Any]) -> dict[str, Any]:
    """Counts for metrics (numbers only, nested per suite) plus one-line messages for logs and errors.

    `success` is a bool and the message lists are not numbers: metric loggers that keep numeric
    leaves only (like `tracking.flatten_metrics`) skip them.
    """
    summary: dict[str, Any] = {
        "success": True,
        "suites": len(reports),
        "expectations_checked": 0,  # not `expectations`: the suites' folder is a DVC dep of that name
        "failed_critical": 0,
        "failed_warning": 0,
        "per_suite": {},
        "critical_failures": [],
        "warnings": [],
    }
    for name, report in reports.items():
        failed = [e for e in report["expectations"] if not e["success"]]
        critical = [e for e in failed if e["critical"]]
        summary["expectations_checked"] += len(report["expectations"])
        summary["failed_critical"] += len(critical)
        summary["failed_warning"] += len(failed) - len(critical)
        summary["per_suite"][name] = {
            "rows": report["rows"],
            "expectations_checked": len(report["expectations"]),
            "failed_critical": len(critical),
            "failed_warning": len(failed) - len(critical),
        }
        for expectation in failed:
            key = "critical_failures" if expectation["critical"] else "warnings"
            summary[key].append(_failure_message(name, expectation))
    summary["success"] = summary["failed_critical"] == 0
    return summary


def raise_on_critical(summary: dict[str, Any]) -> None:
    """Raise DataValidationError: how many critical expectations failed, the first in full, and the name
    of every other one (their values are in results.json)."""
    failures = summary.get("critical_failures") or []
    if len(failures) == 1:
        raise DataValidationError(failures[0])
    if failures:
        others = ", ".join(message.split(" failed: ", 1)[0] for message in failures[1:])
        raise DataValidationError(f"{len(failures)} critical expectations failed: {failures[0]}; also {others} "
                                  "(see results.json)")


def _failure_message(suite: str, expectation: dict[str, Any]) -> str:
    """`suite: expect_x(column) failed: N unexpected values, e.g. [...] (ids [...])`, on one line."""
    kwargs = expectation["kwargs"]
    target = (
        kwargs.get("column")
        or ", ".join(kwargs.get("column_list") or [])
        or ", ".join(str(kwargs[k]) for k in ("column_A", "column_B") if k in kwargs)
    )
    head = f"{suite}: {expectation['type']}({target}) failed: "
    if expectation.get("exception"):
        return head + f"raised {_first_line(expectation['exception'])}"
    if expectation.get("unexpected_count") is not None:
        examples = [_short(v) for v in _unique(expectation.get("partial_unexpected_list") or [])[:3]]
        ids = [_short(v) for v in _unique(expectation.get("partial_unexpected_index") or [])[:3]]
        id_part = f" (ids {ids!r})" if ids and ids != examples else ""
        return head + f"{expectation['unexpected_count']} unexpected values, e.g. {examples!r}{id_part}"
    bounds = [f"{k}={kwargs[k]!r}" for k in ("min_value", "max_value", "value") if kwargs.get(k) is not None]
    return (
        head
        + f"observed {expectation.get('observed_value')!r}"
        + (f", expected {', '.join(bounds)}" if bounds else "")
    )


def _short(value: Any) -> Any:
    """Strings cut to MESSAGE_VALUE_CHARS so one message stays one readable line."""
    if isinstance(value, str) and len(value) > MESSAGE_VALUE_CHARS:
        return value[:MESSAGE_VALUE_CHARS] + "…"
    return value


def _unique(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _first_line(error: Any) -> str:
    text = str(error).strip()
    return re.split(r"\r?\n", text, maxsplit=1)[0] if text else type(error).__name__
