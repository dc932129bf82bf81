"""The validate stage with real Great Expectations and the repo's own suites in `expectations/`.

GX runs are the slow part (~0.5 s each after a ~4 s import), so the good dataset, its validation and
one run over frames with a defect planted in each suite are module-scoped and shared.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scratchlm.config.data import ValidateParams
from scratchlm.data.roles import ROLE_FRAMES, source_roles
from scratchlm.data.validation import (
    DataValidationError,
    label_share_frame,
    load_suite,
    load_validation_frames,
    raise_on_critical,
    validate_frames,
)
from scratchlm.io import make_document, write_documents, write_jsonl

SUITES = Path(__file__).resolve().parents[2] / "expectations"
PARAMS = ValidateParams(allowed_sources=["wikitext2", "wiki_summaries"], min_instruction_pairs=2,
                        label_shares={"spam": (0.05, 0.5)})
TEXTS = [
    "The cathedral was rebuilt after the fire.\nIts towers date from 1250.",
    "Rivers in the north freeze every winter.",
    "The treaty was signed in the spring of 1648.",
    "Bees communicate the direction of flowers by dancing.",
]


def _docs(source: str, splits: list[str], texts: list[str]) -> list[dict[str, str]]:
    return [
        make_document(f"{source}/{split}/{i:04d}", text, source, {"split": split})
        for i, (split, text) in enumerate(zip(splits, texts, strict=True))
    ]


def write_layout(root: Path) -> tuple[Path, Path, Path]:
    """A small but complete data/raw, data/clean, data/dedup tree, with the non-data files a run leaves."""
    raw, clean, dedup = root / "raw", root / "clean", root / "dedup"
    wikitext = _docs("wikitext2", ["train", "val", "test"], TEXTS[:3])
    summaries = _docs("wiki_summaries", ["train"], TEXTS[3:])
    for base in (raw / "pretrain", clean):
        for name, docs in (("wikitext2", wikitext), ("wiki_summaries", summaries)):
            (base / name).mkdir(parents=True)
            write_documents(base / name / "train-00000.parquet", docs)
            if base != clean:
                (base / name / "source.json").write_text(json.dumps({"name": name, "role": "pretrain"}))
    for base in (raw, clean):
        (base / "manifest.json").write_text("{}")
    for split, docs in (
        ("train", [wikitext[0], summaries[0]]),
        ("val", [wikitext[1]]),
        ("test", [wikitext[2]]),
    ):
        (dedup / split).mkdir(parents=True)
        write_documents(dedup / split / "part-00000.parquet", docs)
    (dedup / "manifest.json").write_text("{}")
    write_jsonl(dedup / "clusters.jsonl", [{"kept": "x", "dropped": ["y"]}])

    sets = {
        "sms_spam": (
            "classification",
            {
                "data": [
                    {"id": f"sms_spam/{i:05d}", "text": f"message {i}", "label": "spam" if i < 2 else "ham"}
                    for i in range(10)
                ]
            },
        ),
        "chatterbot": (
            "instruction",
            {
                "data": [
                    {
                        "id": f"chatterbot/{i}",
                        "instruction": f"question {i}?",
                        "input": "",
                        "output": f"answer {i}",
                        "category": "trivia",
                    }
                    for i in range(3)
                ]
            },
        ),
        "prefs": (
            "preference",
            {
                "data": [
                    {"id": f"prefs/{i}", "prompt": f"question {i}?", "input": "", "chosen": f"good answer {i}",
                     "rejected": f"bad answer {i}"}
                    for i in range(2)
                ]
            },
        ),
        "benchmarks": (
            "benchmark",
            {
                "piqa": [_item("piqa", 0, ["up", "down"], 1), _item("piqa", 1, ["left", "right"], 0)],
                "lambada": [_item("lambada", 0, ["signs"], 0)],
            },
        ),
    }
    for name, (role, members) in sets.items():
        (raw / role / name).mkdir(parents=True)
        (raw / role / name / "source.json").write_text(json.dumps({"name": name, "role": role}))
        for member, records in members.items():
            write_jsonl(raw / role / name / f"{member}.jsonl", records)
    return raw, clean, dedup


def required_frames(roles: dict[str, str]) -> tuple[str, ...]:
    """What the validate stage requires (pipelines/validate.py, which tests cannot import: `pipelines` here is
    tests/pipelines): every corpus frame, and the frame of each role download wrote a source of."""
    return tuple(sorted({"raw_documents", "clean_documents", "dedup_documents", *(ROLE_FRAMES[r] for r in roles.values())}))


def _item(task: str, index: int, choices: list[str], gold: int) -> dict[str, Any]:
    return {
        "id": f"{task}/{index:06d}",
        "task": task,
        "query": f"query {index}",
        "choices": choices,
        "gold": gold,
        "requests": [{"context": f"query {index}", "continuation": f" {c}"} for c in choices],
    }


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    return load_validation_frames(*write_layout(tmp_path_factory.mktemp("data")), PARAMS.label_shares)


@pytest.fixture(scope="module")
def good_run(frames: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("good")
    return validate_frames(frames, SUITES, out, PARAMS), out


def _copy(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: frame.copy() for name, frame in frames.items()}


@pytest.fixture(scope="module")
def bad_run(frames: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One defect planted per suite, all validated in a single GX run."""
    bad = _copy(frames)
    bad["raw_documents"].loc[1, "id"] = bad["raw_documents"].loc[0, "id"]
    bad["clean_documents"].loc[2, "text"] = ""
    bad["classification"].loc[3, "label"] = " "
    bad["label_shares"] = label_share_frame(frames["classification"], {"spam": (0.05, 0.5), "junk": (0.1, 1.0)})
    bad["benchmarks"].loc[0, "gold"] = 7
    bad["dedup_documents"].loc[1, "text"] = bad["dedup_documents"].loc[0, "text"]
    bad["instructions"] = bad["instructions"].iloc[:1]  # below min_instruction_pairs
    return validate_frames(bad, SUITES, tmp_path_factory.mktemp("bad"), PARAMS)


def test_loader_reads_the_on_disk_layout(frames: dict[str, pd.DataFrame]) -> None:
    assert sorted(frames) == sorted(
        ["raw_documents", "clean_documents", "dedup_documents", "classification", "label_shares", "instructions",
         "preferences", "benchmarks"]
    )
    assert (
        len(frames["raw_documents"]) == len(frames["clean_documents"]) == len(frames["dedup_documents"]) == 4
    )
    assert sorted(frames["raw_documents"]["source"].unique()) == ["wiki_summaries", "wikitext2"]
    assert frames["raw_documents"]["split"].tolist() == ["train", "train", "val", "test"]
    assert frames["dedup_documents"]["split"].tolist() == [
        "train",
        "train",
        "val",
        "test",
    ]  # from the folders
    assert frames["label_shares"].to_dict("records") == [  # params' bounds beside each label's share
        {"label": "ham", "share": 0.8, "min_share": 0.0, "max_share": 1.0},
        {"label": "spam", "share": 0.2, "min_share": 0.05, "max_share": 0.5}]
    bench = frames["benchmarks"].set_index("id")
    assert bench.loc["lambada/000000", "n_choices"] == 1
    assert bench.loc["piqa/000000", ["n_choices", "n_requests", "min_choice_chars"]].tolist() == [2, 2, 2]
    assert "choices" not in bench.columns
    assert sorted(frames["preferences"].columns) == ["chosen", "id", "input", "prompt", "rejected", "same_answer",
                                                     "source"]
    assert frames["preferences"]["same_answer"].tolist() == [False, False]


def test_loader_skips_absent_sets(tmp_path: Path) -> None:
    source = tmp_path / "raw" / "pretrain" / "wikitext2"
    source.mkdir(parents=True)
    write_documents(source / "train-00000.parquet", _docs("wikitext2", ["train"], TEXTS[:1]))
    (source / "source.json").write_text(json.dumps({"name": "wikitext2", "role": "pretrain"}))
    assert list(load_validation_frames(tmp_path / "raw", tmp_path / "clean", tmp_path / "dedup")) == [
        "raw_documents"
    ]


def test_good_dataset_passes(good_run: tuple[dict, Path]) -> None:
    summary, _ = good_run
    assert summary["success"], summary["critical_failures"] + summary["warnings"]
    assert summary["suites"] == 8 and summary["failed_critical"] == summary["failed_warning"] == 0
    assert summary["expectations_checked"] > 50
    raise_on_critical(summary)


def test_reports_are_written_and_reproducible(
    good_run: tuple[dict, Path], frames: dict, tmp_path: Path
) -> None:
    summary, out = good_run
    assert (out / "data_docs" / "index.html").is_file()
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["suites"]) == [
        "benchmarks",
        "classification",
        "clean_documents",
        "dedup_documents",
        "instructions",
        "label_shares",
        "preferences",
        "raw_documents",
    ]
    first = results["suites"]["classification"]["expectations"][0]
    assert set(first) >= {
        "type",
        "kwargs",
        "critical",
        "success",
        "unexpected_count",
        "partial_unexpected_list",
    }
    shares = results["suites"]["label_shares"]
    assert shares["rows"] == 2 and all(e["success"] for e in shares["expectations"])
    again = tmp_path / "again"
    validate_frames({"classification": frames["classification"]}, SUITES, again, PARAMS)
    rerun = json.loads((again / "results.json").read_text())
    assert rerun["suites"]["classification"] == results["suites"]["classification"]  # no run ids or timestamps


@pytest.mark.parametrize(
    ("expected"),
    [
        "raw_documents: expect_column_values_to_be_unique(id) failed: 2 unexpected values, "
        "e.g. ['wiki_summaries/train/0000']",
        "clean_documents: expect_column_values_to_match_regex(text) failed: 1 unexpected values, e.g. [''] "
        "(ids ['wikitext2/val/0001'])",
        "classification: expect_column_values_to_match_regex(label) failed: 1 unexpected values, e.g. [' ']",
        "label_shares: expect_column_pair_values_a_to_be_greater_than_b(share, min_share) failed: 1 unexpected "
        "values",
        "benchmarks: expect_column_pair_values_a_to_be_greater_than_b(n_choices, gold) failed: "
        "1 unexpected values, e.g. [[1, 7]] (ids ['lambada/000000'])",
        "dedup_documents: expect_column_values_to_be_unique(text) failed: 2 unexpected values",
        "instructions: expect_table_row_count_to_be_between() failed: observed 1, expected min_value=2",
    ],
)
def test_planted_defects_fail_critically(bad_run: dict, expected: str) -> None:
    assert any(message.startswith(expected) for message in bad_run["critical_failures"]), bad_run[
        "critical_failures"
    ]


def test_raise_on_critical_names_suite_expectation_and_value(bad_run: dict) -> None:
    assert not bad_run["success"] and bad_run["failed_critical"] >= 6
    with pytest.raises(DataValidationError) as raised:
        raise_on_critical(bad_run)
    message = str(raised.value)
    assert "\n" not in message
    assert re.match(rf"^{bad_run['failed_critical']} critical expectations failed: raw_documents: "
                    r"expect_column_values_to_be_unique\(id\).*wiki_summaries/train/0000.*; also ", message)
    for failure in bad_run["critical_failures"]:  # every failed expectation is named, not just the first
        assert failure.split(" failed: ", 1)[0] in message


def test_warning_failures_do_not_raise(frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    raw = frames["raw_documents"].copy()
    raw.loc[0, "text"] = "a bell\x07 rang"  # control characters only warn on raw text
    summary = validate_frames({"raw_documents": raw}, SUITES, tmp_path, PARAMS)
    assert summary["success"] and summary["failed_critical"] == 0 and summary["failed_warning"] == 1
    assert summary["warnings"][0].startswith(
        "raw_documents: expect_column_values_to_not_match_regex(text) failed"
    )
    raise_on_critical(summary)


def test_thresholds_come_from_params(frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    strict = PARAMS.model_copy(update={"label_shares": {"spam": (0.05, 0.1)}, "allowed_sources": ["wikitext2"]})
    shares = label_share_frame(frames["classification"], strict.label_shares)
    summary = validate_frames(
        {"label_shares": shares, "clean_documents": frames["clean_documents"]},
        SUITES,
        tmp_path / "strict",
        strict,
    )
    failures = "\n".join(summary["critical_failures"])
    assert ("label_shares: expect_column_pair_values_a_to_be_greater_than_b(max_share, share) failed: 1 unexpected "
            "values") in failures and "(ids ['spam'])" in failures
    assert (
        "clean_documents: expect_column_values_to_be_in_set(source) failed: 1 unexpected values, e.g. "
        "['wiki_summaries']" in failures
    )


def test_empty_allowed_sources_disables_the_source_check(tmp_path: Path) -> None:
    suite, disabled = load_suite(
        SUITES / "raw_documents.json", PARAMS.model_copy(update={"allowed_sources": []})
    )
    assert [d["kwargs"]["column"] for d in disabled] == ["source"]
    assert all(getattr(e, "column", None) != "source" for e in suite.expectations)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"meta": {}}, "meta.critical must be true or false"),
        (
            {"kwargs": {"column": "id", "mostly": {"$PARAMETER": "min_txt_chars"}}},
            "unknown parameter 'min_txt_chars'",
        ),
        ({"kwargs": {"colum": "id"}}, "invalid"),
    ],
)
def test_suites_are_loaded_strictly(tmp_path: Path, change: dict, error: str) -> None:
    expectation = {
        "type": "expect_column_values_to_be_unique",
        "kwargs": {"column": "id"},
        "meta": {"critical": True},
    }
    path = tmp_path / "raw_documents.json"
    path.write_text(json.dumps({"name": "raw_documents", "expectations": [{**expectation, **change}]}))
    with pytest.raises(ValueError, match=error):
        load_suite(path, PARAMS)


def test_every_repo_suite_loads() -> None:
    for path in sorted(SUITES.glob("*.json")):
        suite, _ = load_suite(path, PARAMS)
        assert suite.name == path.stem and suite.expectations


def test_missing_required_frame_and_unknown_frame(frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="benchmarks: no data found"):
        validate_frames({}, SUITES, tmp_path, PARAMS, required=["benchmarks"])
    with pytest.raises(ValueError, match="no suite"):
        validate_frames({"mystery": frames["classification"]}, SUITES, tmp_path, PARAMS)


def test_no_network_access(
    frames: dict[str, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    summary = validate_frames({"instructions": frames["instructions"]}, SUITES, tmp_path, PARAMS)
    assert summary["success"]


def test_a_preference_pair_with_one_answer_twice_fails_naming_it(tmp_path: Path) -> None:
    """A hand-edited (or differently produced) pair file: the reader's checks did not run on it."""
    folder = tmp_path / "raw" / "preference" / "prefs"
    folder.mkdir(parents=True)
    (folder / "source.json").write_text(json.dumps({"name": "prefs", "role": "preference"}))
    write_jsonl(folder / "data.jsonl", [
        {"id": "prefs/1", "prompt": "Say hi", "input": "", "chosen": "Hi!", "rejected": "Go away."},
        {"id": "prefs/2", "prompt": "Say bye", "input": "", "chosen": "Bye.", "rejected": " Bye.\n"},
        {"id": "prefs/3", "prompt": " ", "input": "", "chosen": "Yes.", "rejected": "No."},
    ])
    frames = load_validation_frames(tmp_path / "raw", tmp_path / "clean", tmp_path / "dedup")
    assert list(frames) == ["preferences"] and frames["preferences"]["same_answer"].tolist() == [False, True, False]
    assert "preferences" in required_frames({"prefs": "preference"})  # the stage requires what download wrote
    summary = validate_frames(frames, SUITES, tmp_path / "out", PARAMS, required=["preferences"])
    assert summary["critical_failures"] == [
        "preferences: expect_column_values_to_match_regex(prompt) failed: 1 unexpected values, e.g. [' '] "
        "(ids ['prefs/3'])",
        "preferences: expect_column_values_to_be_in_set(same_answer) failed: 1 unexpected values, e.g. [True] "
        "(ids ['prefs/2'])",
    ]
    with pytest.raises(DataValidationError, match=r"^2 critical expectations failed: preferences: ") as raised:
        raise_on_critical(summary)
    assert "\n" not in str(raised.value)


def test_validate_without_a_preference_source_passes(tmp_path: Path) -> None:
    """The default pipeline has no preference source: download writes the role's index alone, no frame is
    built, the stage does not require one, and nothing fails."""
    raw, clean, dedup = write_layout(tmp_path)
    shutil.rmtree(raw / "preference" / "prefs")
    (raw / "preference" / "sources.json").write_text(json.dumps({"role": "preference", "sources": []}))
    frames = load_validation_frames(raw, clean, dedup, PARAMS.label_shares)
    required = required_frames(source_roles(raw))
    assert "preferences" not in frames and "preferences" not in required
    summary = validate_frames(frames, SUITES, tmp_path / "out", PARAMS, required=required)
    assert summary["success"] and summary["suites"] == 7, summary["critical_failures"]
    with pytest.raises(DataValidationError, match="preferences: no data found"):  # a source whose data went missing
        validate_frames(frames, SUITES, tmp_path / "again", PARAMS, required=[*required, "preferences"])
