"""Manifests: a function of inputs, params and code alone, chained by digest, hashed as DVC hashes them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scratchlm.io import dvc_dir_md5
from scratchlm.lineage.manifest import (
    describe_code,
    describe_input,
    manifest_sha256,
    read_manifest,
    write_manifest,
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "code.py").write_text("x = 1\n")
    raw = tmp_path / "data" / "raw"
    (raw / "src").mkdir(parents=True)
    (raw / "src" / "a.txt").write_text("A")
    (raw / "b.txt").write_text("B")
    return tmp_path


def write_raw(params: dict) -> dict:
    return write_manifest(Path("data/raw"), stage="download", params=params, inputs={},
                          code=describe_code(["code.py"], Path(".")))


def test_the_same_inputs_params_and_code_give_the_same_manifest_bytes(workdir: Path) -> None:
    write_raw({"p": 1})
    first = (workdir / "data/raw/manifest.json").read_bytes()
    write_raw({"p": 1})
    assert (workdir / "data/raw/manifest.json").read_bytes() == first
    manifest = read_manifest("data/raw/src/a.txt")
    assert set(manifest) == {"format", "stage", "params", "code", "inputs", "outputs", "other_outputs"}
    assert set(manifest["outputs"]) == {"b.txt", "src/a.txt"}
    write_raw({"p": 2})
    assert (workdir / "data/raw/manifest.json").read_bytes() != first


def test_inputs_record_content_producer_manifest_and_dvc_hash(workdir: Path) -> None:
    write_raw({"p": 1})
    entry = describe_input("data/raw")
    assert entry["producer_stage"] == "download"
    assert entry["producer_manifest"] == manifest_sha256("data/raw")
    write_raw({"p": 2})
    again = describe_input("data/raw")
    assert again["sha256"] == entry["sha256"], "the content digest covers the data, not the manifest"
    assert again["producer_manifest"] != entry["producer_manifest"] and again["md5"] != entry["md5"]
    file_entry = describe_input("data/raw/b.txt")
    assert file_entry["kind"] == "file" and file_entry["producer_stage"] == "download"


def test_a_part_of_an_output_records_the_producer_entries_for_that_part(workdir: Path) -> None:
    """A stage reading data/raw/src alone must not change when another part of data/raw does (another role's
    source), and must still see its own part's manifest entries re-hashed (a forgery)."""
    from scratchlm.audit.checks import part_problems

    write_raw({"p": 1})
    entry = describe_input("data/raw/src")
    assert "producer_manifest" not in entry and entry["producer_stage"] == "download"
    (workdir / "data/raw/b.txt").write_text("B, another role's data")
    write_raw({"p": 2})  # the producer re-ran: another manifest, the same entries under src/
    assert describe_input("data/raw/src") == entry
    assert part_problems("data/raw/src", workdir / "data/raw/src", workdir, entry["producer_part"]) == []
    manifest = json.loads(Path("data/raw/manifest.json").read_text())
    manifest["outputs"]["src/a.txt"]["sha256"] = "0" * 64  # an entry of the part, re-hashed by hand
    Path("data/raw/manifest.json").write_text(json.dumps(manifest))
    assert describe_input("data/raw/src")["producer_part"] != entry["producer_part"]
    (line,) = part_problems("data/raw/src", workdir / "data/raw/src", workdir, entry["producer_part"])
    assert line.startswith("data/raw/src: its entries in data/raw/manifest.json are not the ones the stage read")


def test_folder_md5_is_the_one_dvc_records(workdir: Path) -> None:
    """`dvc add` of the same folder, by the real DVC: the .dvc file's md5 is ours."""
    write_raw({"p": 1})
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([*dvc, "init", "-q"], check=True)
    subprocess.run([*dvc, "add", "-q", "data/raw"], check=True)
    recorded = yaml.safe_load(Path("data/raw.dvc").read_text())["outs"][0]["md5"]
    assert describe_input("data/raw")["md5"] == recorded
    manifest = json.loads(Path("data/raw/manifest.json").read_text())
    files = {rel: entry["md5"] for rel, entry in manifest["outputs"].items()}
    assert dvc_dir_md5({**files, "manifest.json": describe_input("data/raw/manifest.json")["md5"]}) == recorded


def test_code_is_recorded_per_file(workdir: Path) -> None:
    code = describe_code(["code.py"], workdir)
    assert set(code) == {"code.py"} and set(code["code.py"]) == {"sha256", "md5"}


def test_a_manifest_above_the_repository_is_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "repo" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo")
    assert read_manifest("data") is None
    shutil.rmtree(tmp_path / "repo")
