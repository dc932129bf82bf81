"""Bad input to the `scratchlm` commands (export, import-hf, generate, classify, chat, profile, audit), run as a
user runs them: one `error:` line naming the file, key or option at fault, exit status 1, no traceback, and
nothing of the user's deleted or overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_dirs import TEXTS, make_model_dir

from scratchlm.io import tree_sha256
from scratchlm.tokenizer import EOT, train_bpe


def scratchlm(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, in this process (a new interpreter costs seconds of imports per case); an
    exception that escaped the command is re-raised, so a traceback fails the test as it would show."""
    from typer.testing import CliRunner

    from scratchlm.cli import app

    here = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), env=env)
    finally:
        os.chdir(here)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def scratchlm_process(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command in its own interpreter, as a user runs it: what it prints is all there is."""
    return subprocess.run([sys.executable, "-m", "scratchlm.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stdout[-1500:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stdout + result.stderr
    return errors[0]


# ---------------------------------------------------------------------------------- export / import-hf


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A DVC project whose dvc.yaml tracks models/ outputs, holding two trained-looking model folders."""
    shutil.copy(Path(__file__).resolve().parents[2] / "dvc.yaml", tmp_path / "dvc.yaml")
    make_model_dir(tmp_path / "models" / "pretrain")
    make_model_dir(tmp_path / "models" / "classifier")
    (tmp_path / "models" / "tokenizer").mkdir()
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("the user's own work")
    return tmp_path


@pytest.mark.parametrize(("command", "out", "message"), [
    ("export", "models", "--out models contains models/aligned, a pipeline output tracked by DVC"),
    ("export", "models/pretrain", "--out models/pretrain is models/pretrain, a pipeline output tracked by DVC"),
    ("export", "models/pretrain/hf", "--out models/pretrain/hf lies inside models/pretrain, a pipeline output"),
    ("export", "data/raw/x", "--out data/raw/x lies inside data/raw, a pipeline output tracked by DVC"),
    ("export", "reports", "--out reports contains reports/data_validation, a pipeline output tracked by DVC"),
    ("export", ".", "--out . is or contains the project"),
    ("export", "..", "--out .. is or contains the project"),
    ("export", "notes", "--out notes is a folder that scratchlm did not create"),
    ("export", "notes/mine.txt", "--out notes/mine.txt is a file"),
    ("import-hf", "models", "--out models contains models/aligned, a pipeline output tracked by DVC"),
    ("import-hf", "models/tokenizer", "--out models/tokenizer is models/tokenizer, a pipeline output tracked by DVC"),
    ("import-hf", "notes", "--out notes is a folder that scratchlm did not create"),
], ids=lambda value: value if isinstance(value, str) and " " not in value else None)
def test_an_out_folder_that_is_not_the_commands_own_is_refused(project: Path, command: str, out: str,
                                                              message: str) -> None:
    before = {name: tree_sha256(project / name) for name in ("models", "data", "notes")}
    source = ["--model", "models/pretrain"] if command == "export" else ["models/pretrain"]
    line = one_error_line(scratchlm(project, command, *source, "--out", out))
    assert message in line, line
    assert {name: tree_sha256(project / name) for name in before} == before  # nothing deleted or written


def test_an_out_folder_over_a_source_outside_the_pipeline_is_refused(project: Path) -> None:
    assert scratchlm(project, "export", "--model", "models/pretrain", "--out", "exports/hf").returncode == 0
    line = one_error_line(scratchlm(project, "import-hf", "exports/hf", "--out", "exports"))
    assert "--out exports contains the import-hf source exports/hf: it would be replaced" in line, line


def test_export_may_replace_only_its_own_earlier_export(project: Path) -> None:
    assert scratchlm(project, "export", "--model", "models/pretrain", "--out", "exports/hf").returncode == 0
    provenance = json.loads((project / "exports/hf/scratchlm-provenance.json").read_text())
    assert provenance["command"] == "export" and provenance["source"] == str((project / "models/pretrain").resolve())
    again = scratchlm(project, "export", "--model", "models/pretrain", "--out", "exports/hf")
    assert again.returncode == 0, again.stderr[-2000:]


def hf_folder(root: Path, config_change: dict | None = None, weights: str = "safetensors") -> Path:
    """A transformers-style GPT-2 folder made without transformers: our export's renaming, by hand."""
    from scratchlm.interop.hf import to_hf_state
    from scratchlm.model.gpt import load_model

    ours = make_model_dir(root / "ours")
    model = load_model(ours)
    root.joinpath("hf").mkdir()
    state = to_hf_state(model)
    state.pop("lm_head.weight")
    if weights == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(root / "hf" / "model.safetensors"))
    c = model.config
    config = {"model_type": "gpt2", "vocab_size": c.vocab_size, "n_positions": c.block_size, "n_embd": c.n_embd,
              "n_layer": c.n_layer, "n_head": c.n_head, **(config_change or {})}
    (root / "hf" / "config.json").write_text(json.dumps(config))
    train_bpe(TEXTS, 300, 1, [EOT]).save(str(root / "hf" / "tokenizer.json"))
    return root / "hf"


class Payload:
    """What a hostile checkpoint carries: unpickling it would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_import_of_a_pickled_bin_refuses_and_runs_nothing(tmp_path: Path) -> None:
    hf = hf_folder(tmp_path)
    (hf / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    torch.save({"wte.weight": torch.zeros(2, 2), "evil": Payload(marker)}, hf / "pytorch_model.bin")
    line = one_error_line(scratchlm_process(tmp_path, "import-hf", "hf", "--out", "gpt2"))
    assert "hf/pytorch_model.bin: refused, it holds pickled objects other than tensors; nothing in it was run" in line
    assert "weights_only=False" not in line and not marker.exists() and not (tmp_path / "gpt2").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"n_embd": 1_000_000, "n_head": 1000}, "config.json does not match the weights (h.0.attn.c_attn.bias: "
                                            "config.json gives [3000000], the weights have [48])"),
    ({"vocab_size": 10**9}, "config.json does not match the weights (wte.weight: config.json gives [1000000000, 16]"),
    ({"n_layer": 3}, "config.json does not match the weights (h.2."),
    ({"n_embd": "wide"}, "hf/config.json: transformers cannot read it (Validation error for field 'n_embd'"),
])
def test_import_compares_config_with_the_weights_before_allocating(tmp_path: Path, change: dict,
                                                                   message: str) -> None:
    """A config claiming a model of terabytes is refused from the safetensors header, at once."""
    hf_folder(tmp_path, change)
    line = one_error_line(scratchlm(tmp_path, "import-hf", "hf", "--out", "gpt2"))
    assert message in line, line


def test_a_config_that_is_not_json_is_named(tmp_path: Path) -> None:
    hf = hf_folder(tmp_path)
    (hf / "config.json").write_text("{model_type: gpt2")
    assert "hf/config.json: not valid JSON (" in one_error_line(scratchlm(tmp_path, "import-hf", "hf", "--out", "g"))
    model = make_model_dir(tmp_path / "m")
    (model / "config.json").write_text("not json")
    line = one_error_line(scratchlm(tmp_path, "generate", "--model", "m", "--prompt", "the"))
    assert "m/config.json: not valid JSON (" in line, line


# ---------------------------------------------------------------------------------- generate / classify / chat


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", str(2**64)], f"--seed must be between 0 and {2**64 - 1}, got {2**64}"),
    (["--seed", "-1"], f"--seed must be between 0 and {2**64 - 1}, got -1"),
    (["--temperature", "nan"], "--temperature must be at least 0, got nan"),
    (["--temperature", "-1"], "--temperature must be at least 0, got -1.0"),
    (["--top-p", "inf"], "--top-p must be between 0 and 1, got inf"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
])
def test_generate_options_out_of_range_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    make_model_dir(tmp_path / "m")
    line = one_error_line(scratchlm(tmp_path, "generate", "--model", "m", "--prompt", "the", *args))
    assert line == f"error: {message}", line


def test_a_vanishing_temperature_samples_greedily(tmp_path: Path) -> None:
    make_model_dir(tmp_path / "m")
    tiny = scratchlm(tmp_path, "generate", "--model", "m", "--prompt", "the cat", "--max-new-tokens", "6",
                     "--temperature", "1e-45", "--seed", str(2**64 - 1))
    greedy = scratchlm(tmp_path, "generate", "--model", "m", "--prompt", "the cat", "--max-new-tokens", "6",
                       "--temperature", "0")
    assert tiny.returncode == 0, tiny.stderr[-2000:]
    assert tiny.stdout == greedy.stdout


def classifier_dir(root: Path) -> Path:
    folder = make_model_dir(root)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "head": {"type": "classification",
                                                                       "labels": ["ham", "spam"]}}))
    from safetensors.torch import load_file, save_file

    state = {f"body.{k}": v for k, v in load_file(str(folder / "model.safetensors")).items()}
    state |= {"head.weight": torch.zeros(2, config["n_embd"]), "head.bias": torch.zeros(2)}
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_classify_with_truncated_or_mismatched_weights_is_one_line(tmp_path: Path) -> None:
    folder = classifier_dir(tmp_path / "c")
    assert scratchlm(tmp_path, "classify", "--model", "c", "hello").returncode == 0
    weights = folder / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    assert "c/model.safetensors: unreadable weights" in one_error_line(scratchlm(tmp_path, "classify", "--model",
                                                                                 "c", "hi"))
    weights.write_bytes(whole)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "head": {"type": "classification",
                                                                       "labels": ["a", "b", "c"]}}))
    line = one_error_line(scratchlm(tmp_path, "classify", "--model", "c", "hi"))
    assert "c: config.json does not match the weights (head.bias: config.json gives [3], the weights have [2])" \
        in line, line


def test_chat_with_a_broken_template_is_one_line(tmp_path: Path) -> None:
    make_model_dir(tmp_path / "i")
    (tmp_path / "i" / "template.json").write_text("{broken")
    line = one_error_line(scratchlm(tmp_path, "chat", "--model", "i", "--prompt", "hi"))
    assert "i/template.json: not valid JSON" in line, line
    (tmp_path / "i" / "tokenizer.json").write_text('{"version": "1.0", "truncated')
    line = one_error_line(scratchlm(tmp_path, "chat", "--model", "i", "--prompt", "hi"))
    assert "i/tokenizer.json: not a readable tokenizer" in line, line


# ---------------------------------------------------------------------------------- params files


def test_a_duplicate_params_key_is_refused_by_profile_use_and_every_stage(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text.replace("  min_words: 20\n", "  min_words: 20\n  min_words: 50\n", 1))
    line_no = text.splitlines().index("  min_words: 20") + 2
    before = (tmp_path / "params.yaml").read_bytes()
    (tmp_path / "pipelines" / "profiles").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[2] / "pipelines/profiles/debug.yaml",
                tmp_path / "pipelines/profiles/debug.yaml")
    expected = f"params.yaml:{line_no}: duplicate key 'min_words' (first at line {line_no - 1})"
    assert expected in one_error_line(scratchlm(tmp_path, "profile", "use", "debug"))
    assert (tmp_path / "params.yaml").read_bytes() == before
    from stage_cli import error_line, run_stage, stage_argv

    for stage in ("clean", "tokenize"):  # another section's stage reads the same file
        line = error_line(run_stage(tmp_path, *stage_argv(stage)))
        assert expected in line, line


# ---------------------------------------------------------------------------------- audit


def test_audit_with_a_corrupt_mlflow_database_names_it_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "a.txt").write_text("a")
    from scratchlm.lineage.manifest import write_manifest
    from scratchlm.lineage.runrecord import write_run_record

    cwd = Path.cwd()
    os.chdir(root)
    try:
        write_manifest(Path("data/raw"), stage="download", params={}, inputs={}, code={})
        from scratchlm.lineage.manifest import manifest_sha256

        write_run_record("download", output="data/raw", manifest_sha256=manifest_sha256("data/raw") or "",
                         run_id="a" * 32, experiment="e", started="t", seconds=1, timing={}, dvc_exp=None,
                         commit=None, dirty=False)
    finally:
        os.chdir(cwd)
    (root / "mlflow.db").write_bytes(b"SQLite format 3\x00" + b"\x13" * 4000)
    result = scratchlm_process(root, "audit", "data/raw", env={"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    mlflow_lines = [line for line in result.stdout.splitlines() if "✗ mlflow:" in line]
    assert len(mlflow_lines) == 1 and "mlflow.db cannot be read (DatabaseError" in mlflow_lines[0], result.stdout


def test_import_with_an_unreadable_vocab_or_merges_is_one_line(tmp_path: Path) -> None:
    hf = hf_folder(tmp_path)
    (hf / "tokenizer.json").unlink()
    (hf / "vocab.json").write_text("{not json")
    (hf / "merges.txt").write_text("#version: 0.2\n")
    line = one_error_line(scratchlm(tmp_path, "import-hf", "hf", "--out", "gpt2"))
    assert "hf: vocab.json + merges.txt are not a readable BPE (" in line, line


def test_a_classifier_head_without_a_label_list_is_one_line(tmp_path: Path) -> None:
    folder = classifier_dir(tmp_path / "c")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "head": {"type": "classification", "labels": 5}}))
    line = one_error_line(scratchlm(tmp_path, "classify", "--model", "c", "hi"))
    assert "c/config.json: head.labels must be a list of at least two labels, got 5" in line, line


def test_an_out_folder_that_is_a_symlink_is_refused(project: Path) -> None:
    assert scratchlm(project, "export", "--model", "models/pretrain", "--out", "exports/hf").returncode == 0
    (project / "alias").symlink_to(project / "exports" / "hf")
    line = one_error_line(scratchlm(project, "export", "--model", "models/pretrain", "--out", "alias"))
    assert line == "error: --out alias is a symbolic link: choose a plain folder", line
    assert (project / "exports" / "hf" / "scratchlm-provenance.json").is_file()
