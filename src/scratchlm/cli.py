"""`scratchlm`: the home of user commands (profiles, generate, classify, chat, export, import-hf, audit,
publish-check, lm-eval)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NoReturn

import typer

from scratchlm import profiles
from scratchlm.config.base import ConfigError

app = typer.Typer(help="scratchlm: a reproducible GPT pipeline from raw text to benchmark scores.",
                  no_args_is_help=True, add_completion=False)
profile_app = typer.Typer(help="Named parameter overrides in pipelines/profiles/.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")

PROFILES_DIR = Path("pipelines/profiles")
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes a 64-bit seed


def fail(error: object) -> NoReturn:
    """One `error:` line on stderr and exit status 1: what every command does with bad input."""
    typer.echo(f"error: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}",
               err=True)
    raise typer.Exit(1)


def in_range(**options: tuple[float | None, float, float | None]) -> None:
    """`--name` values within [low, high] and finite, else one line naming the option (checked here rather than
    by typer, whose range errors span several lines and let NaN through: every comparison with NaN is false)."""
    for name, (value, low, high) in options.items():
        if value is None:
            continue
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            fail(f"--{name.replace('_', '-')} must be {bounds}, got {value}")


@profile_app.command("list")
def profile_list(profiles_dir: Path = typer.Option(PROFILES_DIR, help="where profiles live")) -> None:
    """List the available profiles."""
    for name in profiles.available(profiles_dir):
        typer.echo(name)


@profile_app.command("use")
def profile_use(
    name: str = typer.Argument(..., help="profile name (pipelines/profiles/NAME.yaml) or a path to a YAML file"),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="params file to rewrite"),
    profiles_dir: Path = typer.Option(PROFILES_DIR, help="where profiles live"),
) -> None:
    """Merge a profile's overrides into params.yaml (comments and key order are kept)."""
    profile_file = Path(name) if name.endswith((".yaml", ".yml")) else profiles_dir / f"{name}.yaml"
    try:
        sections = profiles.apply_profile(params_file, profile_file)
    except ConfigError as error:
        fail(error)
    typer.echo(f"applied {profile_file} to {params_file}: {', '.join(sections)}")


@app.command()
def generate(
    model: Path = typer.Option(Path("models/pretrain"), help="exported model folder"),
    prompt: str = typer.Option(..., help="text to continue"),
    max_new_tokens: int = typer.Option(100, help="at least 1"),
    temperature: float = typer.Option(0.8, help="0 = greedy"),
    top_k: int = typer.Option(50, help="0 = off"),
    top_p: float = typer.Option(1.0, help="in (0, 1]; 1 = off"),
    seed: int = typer.Option(None, help="fixes the sample (0 to 2**64 - 1)"),
) -> None:
    """Continue a prompt, streaming the text to the terminal."""
    from scratchlm.generate import load_for_generation, stream_text

    in_range(max_new_tokens=(max_new_tokens, 1, None), temperature=(temperature, 0, None), top_k=(top_k, 0, None),
             top_p=(top_p, 0, 1), seed=(seed, 0, MAX_SEED))
    try:
        gpt, tokenizer = load_for_generation(model)
    except (OSError, ValueError) as error:
        fail(error)
    typer.echo(prompt, nl=False)
    for piece in stream_text(gpt, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_k=top_k or None, top_p=top_p if top_p < 1 else None, seed=seed):
        typer.echo(piece, nl=False)
    typer.echo()


@app.command()
def classify(
    text: str = typer.Argument(..., help="the message to classify"),
    model: Path = typer.Option(Path("models/classifier"), help="exported classifier folder"),
) -> None:
    """Print the predicted label and its probability."""
    import torch

    from scratchlm.model.classifier import load_classifier
    from scratchlm.tokenizer import load_tokenizer

    try:
        classifier, labels = load_classifier(model)
        tokenizer = load_tokenizer(model / "tokenizer.json")
    except (OSError, ValueError) as error:
        fail(error)
    ids = tokenizer.encode(text).ids[: classifier.body.config.block_size] or [tokenizer.token_to_id("<|pad|>")]
    with torch.no_grad():
        logits, _ = classifier(torch.tensor([ids]), torch.tensor([len(ids)]))
    probs = logits.softmax(-1)[0]
    best = int(probs.argmax())
    typer.echo(f"{labels[best]}\t{float(probs[best]):.3f}")


@app.command()
def chat(
    model: Path = typer.Option(Path("models/instruct"), help="exported instruction model folder"),
    prompt: str = typer.Option(None, help="answer this one instruction and exit (default: interactive)"),
    max_new_tokens: int = typer.Option(80, help="at least 1"),
    temperature: float = typer.Option(0.0, help="0 = greedy"),
    seed: int = typer.Option(0, help="0 to 2**64 - 1"),
) -> None:
    """Talk to the instruction-tuned model (Ctrl-D or an empty line ends the session)."""
    import json

    from scratchlm.generate import load_for_generation, stream_text
    from scratchlm.prompts import format_prompt

    in_range(max_new_tokens=(max_new_tokens, 1, None), temperature=(temperature, 0, None), seed=(seed, 0, MAX_SEED))
    try:
        gpt, tokenizer = load_for_generation(model)
        template_file = model / "template.json"
        template = json.loads(template_file.read_text(encoding="utf-8"))
        if not isinstance(template, dict) or not {"prompt_template", "input_template"} <= set(template):
            raise ValueError(f"{template_file}: not a prompt template (needs prompt_template and input_template)")
    except json.JSONDecodeError as error:
        fail(f"{template_file}: not valid JSON ({error})")
    except (OSError, ValueError) as error:
        fail(error)
    questions = [prompt] if prompt is not None else _ask()
    for question in questions:
        text = format_prompt(template["prompt_template"], template["input_template"], question)
        for piece in stream_text(gpt, tokenizer, text, max_new_tokens=max_new_tokens, temperature=temperature,
                                 top_k=None, seed=seed):
            typer.echo(piece, nl=False)
        typer.echo()


@app.command()
def export(
    model: Path = typer.Option(Path("models/pretrain"), help="scratchlm model folder (not a classifier)"),
    out: Path = typer.Option(..., help="folder to write (replaced atomically if it exists)"),
    fmt: str = typer.Option("hf", "--format",
                            help="hf: a transformers checkpoint, GPT-2 or Qwen3/Llama (needs transformers)"),
) -> None:
    """Export a model for other tools (hf: loads with AutoModelForCausalLM / AutoTokenizer)."""
    from scratchlm.interop.hf import export_hf

    if fmt != "hf":
        typer.echo(f"error: --format {fmt!r} is not supported (choose: hf)", err=True)
        raise typer.Exit(1)
    try:
        export_hf(model, out)
    except (OSError, ValueError, ImportError) as error:
        fail(error)
    typer.echo(f"exported {model} to {out} (transformers)")


@app.command("import-hf")
def import_hf(
    hf_dir: Path = typer.Argument(..., help="local Hugging Face GPT-2, Llama or Qwen3 folder "
                                            "(config.json + weights + tokenizer)"),
    out: Path = typer.Option(Path("models/gpt2"), help="scratchlm model folder to write"),
) -> None:
    """Import GPT-2, Llama or Qwen3 weights as a scratchlm model, e.g. as the fine-tunes' pretrained model."""
    from scratchlm.interop.hf import import_hf as convert

    try:
        convert(hf_dir, out)
    except (OSError, ValueError) as error:
        fail(error)
    typer.echo(f"imported {hf_dir} to {out}")


@app.command()
def audit(
    target: str = typer.Argument(None, help="output folder, a file in one, reports/metrics/<stage>.json or an "
                                            "MLflow run id (default: reports/model_card)"),
    json_out: Path = typer.Option(Path("reports/audit.json"), "--json-out", help="machine-readable report"),
    md_out: Path = typer.Option(Path("reports/audit.md"), "--md-out", help="markdown report"),
    repo_root: Path = typer.Option(Path("."), "--repo", help="repository to audit"),
    reproduce: str = typer.Option(None, "--reproduce", metavar="STAGE",
                                  help="re-run STAGE in a scratch folder from its manifest's params and inputs "
                                       "and compare the result with the recorded hashes (writes no report)"),
    strict: bool = typer.Option(False, "--strict", help="a release check: also fail when a stage's MLflow run is "
                                                        "in a store this audit cannot reach"),
) -> None:
    """Re-verify an output's lineage down to the raw downloads: hashes, dvc.lock, git, MLflow.

    MLflow is read where each run record says its run is (a server, or a local store on this machine), else
    in params.yaml's `tracking.uri` (MLFLOW_TRACKING_URI wins). A run in a local store on another machine is
    listed as not checked; --strict fails on it. With --reproduce STAGE, re-run that one stage instead and
    compare its outputs file by file.

    Exit status 0 when every check passed (warnings allowed) or the stage reproduced,
    1 when anything failed to verify or reproduce, 2 when the target or stage cannot be audited at all.
    """
    from scratchlm.audit import AuditError, render_tree, write_reports
    from scratchlm.audit import audit as run_audit

    if reproduce is not None:
        _reproduce(reproduce, target, repo_root)
        return
    try:
        report = run_audit(target, repo_root, uri=configured_uri(repo_root), strict=strict)
    except (AuditError, OSError, ValueError) as error:
        typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    typer.echo(render_tree(report), nl=False)
    write_reports(report, repo_root / json_out, repo_root / md_out)
    typer.echo(f"wrote {json_out} and {md_out}")
    if report.failed:
        raise typer.Exit(1)


def configured_uri(repo_root: Path) -> str | None:
    """`tracking.uri` of the repository's params.yaml (None without the file or the key): the one place the
    stages read it from too. A bad section is a ConfigError naming the key."""
    from scratchlm.config.loader import parse_section, read_params_file

    path = repo_root / "params.yaml"
    if not path.is_file():
        return None
    return parse_section("tracking", read_params_file(path).get("tracking")).uri  # type: ignore[attr-defined]


def _reproduce(stage: str, target: str | None, repo_root: Path) -> None:
    """`audit --reproduce STAGE`: the per-file table; exit 1 when it does not reproduce, 2 on misuse."""
    from scratchlm.audit import AuditError, render_reproduce, reproduce_stage

    if target is not None:
        typer.echo("error: --reproduce takes a stage name, not a TARGET as well", err=True)
        raise typer.Exit(2)
    try:
        report = reproduce_stage(stage, repo_root)
    except (AuditError, OSError, ValueError) as error:
        typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    typer.echo(render_reproduce(report), nl=False)
    if not report.reproduced:
        raise typer.Exit(1)


@app.command("publish-check")
def publish_check(
    staged: bool = typer.Option(False, "--staged", help="check the run records staged for the next commit (what "
                                                        "the pre-commit hook runs), not every record in the tree"),
    repo_root: Path = typer.Option(Path("."), "--repo", help="repository to check"),
) -> None:
    """Refuse to publish outputs nobody can audit: a run record made on a dirty tree or at a missing commit.

    Exit status 0 when every record was made from committed code, 1 with one line per record otherwise.
    """
    from scratchlm.lineage.publish import record_problems, staged_records, workspace_records

    records = staged_records(repo_root) if staged else workspace_records(repo_root)
    problems = record_problems(records, repo_root)
    for line in problems:
        typer.echo(f"error: {line}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{len(records)} run record(s) made from committed code")


@app.command("lm-eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def lm_eval(ctx: typer.Context) -> None:
    """Run lm-evaluation-harness with the scratchlm model registered.

    Every argument is lm_eval's (`--help` prints lm_eval's); --model defaults to scratchlm, e.g.
    `scratchlm lm-eval --model_args pretrained=models/pretrain,batch_size=8 --tasks hellaswag`.
    """
    try:
        from scratchlm.interop.harness import run_cli
    except ImportError as error:
        typer.echo(f"error: lm-eval is not installed ({error}): pip install 'scratchlm[harness]'", err=True)
        raise typer.Exit(1) from None
    run_cli(list(ctx.args))


def _ask():
    """Instructions typed at a `> ` prompt until an empty line or end of input."""
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            return
        if not line:
            return
        yield line


def main() -> None:
    app()


if __name__ == "__main__":
    main()
