"""The download output's layout by role: what each stage finds under `data/raw/<role>/<source>/`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratchlm.config.data import DownloadParams
from scratchlm.data.download import download_all
from scratchlm.data.roles import ROLE_FRAMES, ROLES, role_files, role_folder, source_dirs, source_roles
from scratchlm.io import DataFormatError, read_jsonl, write_jsonl


def add_source(raw: Path, role: str, name: str, records: list[dict]) -> Path:
    folder = raw / role / name
    folder.mkdir(parents=True)
    (folder / "source.json").write_text(json.dumps({"name": name, "role": role}))
    write_jsonl(folder / "data.jsonl", records)
    return folder


def test_sources_are_found_from_the_output_a_role_folder_or_the_source(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    sms = add_source(raw, "classification", "sms", [{"id": "s1"}])
    add_source(raw, "classification", "reviews", [{"id": "r1"}])
    add_source(raw, "benchmark", "bench", [{"id": "b1"}])
    assert source_roles(raw) == {"bench": "benchmark", "reviews": "classification", "sms": "classification"}
    assert list(source_dirs(raw / "classification")) == ["reviews", "sms"]
    assert source_dirs(sms) == {"sms": sms}
    # a fine-tune reads every source of its role as one set, in name order
    assert role_files(raw / "classification", "classification") == [
        raw / "classification/reviews/data.jsonl", raw / "classification/sms/data.jsonl"]
    assert role_files(raw, "classification") == role_files(raw / "classification", "classification")
    assert role_folder(raw, "benchmark") == raw / "benchmark" / "bench"


def test_a_missing_role_and_an_ambiguous_benchmark_folder_are_one_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "instruction").mkdir(parents=True)
    with pytest.raises(DataFormatError, match=r"raw/instruction: no source with role 'instruction'"):
        role_files(raw / "instruction", "instruction")
    add_source(raw, "benchmark", "a", [])
    add_source(raw, "benchmark", "b", [])
    with pytest.raises(DataFormatError, match=r"2 sources with role 'benchmark' \(a, b\)"):
        role_folder(raw, "benchmark")
    (raw / "benchmark" / "a" / "source.json").write_text("{}")
    with pytest.raises(DataFormatError, match=r"a/source.json: not a source description"):
        source_roles(raw)


def test_every_role_has_a_validation_frame() -> None:
    assert ROLES == ("pretrain", "classification", "instruction", "preference", "benchmark")
    assert set(ROLE_FRAMES) == set(ROLES) and ROLE_FRAMES["preference"] == "preferences"


def test_download_writes_preference_pairs_as_jsonl_and_every_role_index(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"prompt": "Say hi", "chosen": "Hi!", "rejected": "No."}])
    sms = tmp_path / "sms.csv"
    sms.write_text(",spam,text\n0,1,WIN now\n")
    local = {"kind": "local", "members": {"data": str(pairs)}}
    params = DownloadParams(sources={
        "prefs": {**local, "format": "preference_jsonl", "role": "preference"},
        "sms_qa": {"kind": "local", "format": "sms_instruct", "role": "instruction", "members": {"data": str(sms)}},
    })
    metrics = download_all(params, tmp_path / "raw")
    assert metrics["prefs"]["records"] == metrics["sms_qa"]["records"] == 1
    assert list(read_jsonl(tmp_path / "raw/preference/prefs/data.jsonl")) == [
        {"id": "prefs/000001", "prompt": "Say hi", "input": "", "chosen": "Hi!", "rejected": "No."}]
    assert role_files(tmp_path / "raw", "preference") == [tmp_path / "raw/preference/prefs/data.jsonl"]
    assert source_roles(tmp_path / "raw") == {"prefs": "preference", "sms_qa": "instruction"}
    assert json.loads((tmp_path / "raw/preference/sources.json").read_text()) == {
        "role": "preference", "sources": ["prefs"]}
    # no preference source: the role's folder and index still exist (a DVC dependency of the stages reading it)
    download_all(DownloadParams(sources={"sms_qa": params.sources["sms_qa"]}), tmp_path / "raw2")
    assert json.loads((tmp_path / "raw2/preference/sources.json").read_text()) == {
        "role": "preference", "sources": []}
    assert sorted(p.name for p in (tmp_path / "raw2").iterdir()) == sorted(ROLES)
