"""The model card: everything a reader needs to judge the models, generated from manifests and metrics.

Nothing in it is typed by hand: the data funnel comes from the data stages' metrics, the configs
from the manifests' params, the scores from `evaluate`, the lineage from every stage's manifest.
So the card of any run (or of any `dvc exp`) describes that run and no other. It holds no fact of one
execution (run ids, commits, times, machine): those are in the run records, `reports/runs/<stage>.json`,
so a re-run that gives the same bytes gives the same card.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratchlm.data.roles import source_dirs
from scratchlm.io import DataFormatError, read_jsonl
from scratchlm.lineage.manifest import code_sha256, read_manifest

#: Pretrain's settings the card's "Model and training" table lists, in this order.
TRAINING_SETTINGS = ("optimizer", "max_steps", "batch_size", "grad_accum", "lr", "min_lr", "warmup_steps",
                     "weight_decay", "precision", "compile", "seed")

@dataclass
class CardInputs:
    """What the card is made from: each stage's metrics, manifest and manifest digest, the sources, samples,
    figures."""

    metrics: dict[str, dict[str, Any]]
    manifests: dict[str, dict[str, Any]]
    sources: list[dict[str, Any]]
    digests: dict[str, str] = field(default_factory=dict)
    pretrain_samples: list[str] = field(default_factory=list)
    instruct_samples: list[dict[str, Any]] = field(default_factory=list)
    aligned_samples: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    scaling: dict[str, Any] = field(default_factory=dict)
    """scaling_fit's law.json: the ladder, the fit, the prediction (empty for a run without the ladder)."""


def load_metrics(metrics_dir: Path, stages: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for stage in stages:
        path = metrics_dir / f"{stage}.json"
        try:
            out[stage] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise DataFormatError(f"{path}: unreadable metrics ({type(error).__name__})") from None
    return out


def load_manifests(outputs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    manifests = {}
    for stage, folder in outputs.items():
        manifest = read_manifest(folder / "manifest.json")
        if manifest is None:
            raise DataFormatError(f"{folder / 'manifest.json'}: missing (run the {stage} stage first)")
        manifests[stage] = manifest
    return manifests


def load_sources(raw_dir: Path) -> list[dict[str, Any]]:
    """Each source's `source.json`, by source name."""
    return [json.loads((folder / "source.json").read_text(encoding="utf-8"))
            for folder in source_dirs(raw_dir).values()]


def last_samples(samples_file: Path, count: int) -> list[str]:
    """The final validation's generations (one per prompt) from pretraining's samples.txt."""
    if not samples_file.is_file() or count == 0:
        return []
    blocks = [b.strip() for b in samples_file.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    last_step = blocks[-1].split("]")[0] if blocks else ""
    return [b for b in blocks if b.startswith(last_step)][:count]


def side_by_side(instruct_file: Path, aligned_file: Path, count: int) -> list[dict[str, Any]]:
    """The first `count` test prompts with the reference and both models' answers (evaluate's files)."""
    if not instruct_file.is_file() or not aligned_file.is_file():
        return []
    return [{"instruction": old["instruction"], "reference": old["reference"], "instruct": old["generated"],
             "aligned": new["generated"]}
            for old, new in zip(instruct_samples(instruct_file, count), instruct_samples(aligned_file, count),
                                strict=False)]


def instruct_samples(path: Path, count: int) -> list[dict[str, Any]]:
    return list(read_jsonl(path))[:count] if path.is_file() and count else []


# ------------------------------------------------------------------------------------ formatting


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def outputs_digest(manifest: dict[str, Any]) -> str:
    """One short hash of a stage's output files (sha256 of its manifest's `outputs`)."""
    return hashlib.sha256(json.dumps(manifest.get("outputs", {}), sort_keys=True).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------ sections


def class_labels(classifier: dict[str, Any]) -> list[str]:
    """The classifier's labels in head order, as its confusion matrix names them (`actual_<label>`)."""
    return [key.removeprefix("actual_") for key in classifier.get("confusion", {})]


def section_summary(run: CardInputs) -> list[str]:
    pre, ev = run.metrics["pretrain"], run.metrics["evaluate"]
    mean = ev.get("benchmark_mean", {})
    cls = ev["classifier"]
    params = run.manifests["pretrain"]["params"]
    recipe = f"{params['model'].get('architecture', 'gpt2')} architecture, {params.get('optimizer', 'adamw')} optimizer"
    lines = ["## Summary", "",
             f"A {pre['params_with_embeddings']:,}-parameter GPT ({recipe}) trained from scratch on "
             f"{pre['tokens_seen']:,} tokens, then fine-tuned into a classifier ({', '.join(class_labels(cls))}) "
             "and an instruction follower, aligned to preference pairs. Every figure below comes from this run's "
             "metrics files.", ""]
    rows = [["pretrain val loss (nats/token)", pre["val_loss"], f"unigram baseline {pre['unigram_val_loss']:.3f}"]]
    rows += [[f"{name} word-level perplexity", m["word_ppl"], f"bits per byte {m['bpb']:.3f}"]
             for name, m in ev["language_modeling"].items()]
    if mean:
        rows.append([f"benchmark mean acc_norm ({mean['tasks']} tasks)", mean["acc_norm"],
                     f"chance {mean['chance']:.3f}"])
    rows.append(["classifier test accuracy", cls["accuracy"],
                 f"TF-IDF {cls['baselines']['tfidf_logreg']['accuracy']:.4f}, "
                 f"majority {cls['baselines']['majority']['accuracy']:.4f}"])
    rows.append(["instruction ROUGE-L (test)", ev["instruct"]["rouge_l"],
                 f"exact match {ev['instruct']['exact_match']:.3f}"])
    if "aligned" in ev and "align" in run.metrics:
        rows.append(["aligned ROUGE-L (test)", ev["aligned"]["rouge_l"],
                     f"held-out preference accuracy {run.metrics['align']['heldout']['preference_accuracy']:.3f}"])
    return lines + table(["measure", "value", "for scale"], rows) + [""]


def section_data(run: CardInputs) -> list[str]:
    clean, dedup, download = run.metrics["clean"], run.metrics["dedup"], run.metrics["download"]
    lines = ["## Data", "", "### Sources", ""]
    lines += table(["source", "role", "records", "origin", "sha256", "licence"], [
        [s["name"], s["role"], sum(s["records"].values()),
         f"{s['origin'].get('package', s['origin'].get('kind'))} {s['origin'].get('version', '')}".strip(),
         str(s["origin"].get("sha256", ""))[:16] + "…", s["licence"]] for s in run.sources])
    docs_out = dedup["docs_out"]
    lines += ["", "### Through the stages", ""]
    lines += table(["stage", "documents", "bytes", "removed"], [
        ["download (pretraining sources)", clean["docs_in"], clean["bytes_in"], ""],
        ["clean", clean["docs_out"], clean["bytes_out"], clean["docs_in"] - clean["docs_out"]],
        ["dedup + decontamination", sum(docs_out.values()), dedup["bytes_out"],
         dedup["exact_duplicates_removed"] + dedup["near_duplicates_removed"] + dedup["decontaminated"]]])
    lines += ["", "Documents dropped by each cleaning filter:", ""]
    lines += table(["filter", "documents"], sorted(clean.get("drops", {}).items(), key=lambda kv: -kv[1]))
    lines += ["", f"Duplicates: {dedup['exact_duplicates_removed']} exact, {dedup['near_duplicates_removed']} near "
              f"(MinHash LSH). Decontamination against {dedup['eval_ngrams']:,} evaluation n-grams removed "
              f"{dedup['decontaminated']} documents ({json.dumps(dedup.get('decontaminated_by', {}))}). "
              f"Final split: {', '.join(f'{k} {v:,}' for k, v in sorted(docs_out.items()))} documents. "
              f"Benchmark items downloaded: {download.get('benchmarks', {}).get('records', 0):,}.", ""]
    val = run.metrics.get("validate", {})
    lines += [f"Validation (Great Expectations): {val.get('suites', 0)} suites, {val.get('expectations_checked', 0)} "
              f"expectations, {val.get('failed_critical', 0)} critical and {val.get('failed_warning', 0)} warning "
              "failures.", ""]
    if "data_funnel" in run.figures:
        lines += [f"![Data funnel]({run.figures['data_funnel']})", ""]
    return lines



def section_model(run: CardInputs) -> list[str]:
    tok, pre = run.metrics["tokenizer"], run.metrics["pretrain"]
    params = run.manifests["pretrain"]["params"]
    lines = ["## Tokenizer", "", f"Byte-level BPE, {tok['vocab_size']:,} tokens, trained on the dedup train split: "
             f"{tok['bytes_per_token']:.2f} bytes/token and {tok['tokens_per_word']:.2f} tokens/word on validation "
             f"text, {pct(tok['byte_token_share'])} of tokens are lone bytes.", "", "## Model and training", ""]
    trained = {**(pre.get("shape") or {}), "max_steps": pre["steps"]}  # what from_ladder left to the ladder

    def shown(key: str, value: Any) -> str:
        if value is None and key in trained:
            return f"{json.dumps(trained[key])} (the ladder's choice)"
        return json.dumps(value)

    lines += table(["setting", "value"], [[key, shown(key, value)] for key, value in sorted(params["model"].items())]
                   + [[key, shown(key, params[key])] for key in TRAINING_SETTINGS if key in params])
    flops = pre["flops_per_token"] * pre["tokens_seen"]
    lines += ["", "### Compute", "", f"Pretraining: {pre['steps']:,} steps, {pre['tokens_seen']:,} tokens, "
              f"{flops:.3g} training FLOPs in {pre['precision']}. Its wall time, speed (tokens/s, MFU) and "
              "machine are in its run record, `reports/runs/pretrain.json`."]
    if "loss_curves" in run.figures:
        lines += ["", f"![Loss curves]({run.figures['loss_curves']})"]
    return lines + [""]


def section_evaluation(run: CardInputs) -> list[str]:
    ev = run.metrics["evaluate"]
    lines = ["## Evaluation", "", "### Language modelling (held-out text)", ""]
    lines += table(["text", "documents", "tokens", "loss", "perplexity", "bits/byte", "word perplexity"], [
        [name, m["documents"], m["tokens"], m["loss"], m["ppl"], m["bpb"], m["word_ppl"]]
        for name, m in ev["language_modeling"].items()])
    lines += ["", "### Zero-shot benchmarks", "", "Scored as lm-evaluation-harness does (sum of continuation "
              "log-likelihoods; acc_norm divides by the continuation's characters); ± is the standard error.", ""]
    tasks = ev["benchmarks"]
    lines += table(["task", "items", "acc", "acc_norm", "chance"], [
        [task, m["items"], f"{m['acc']:.3f} ± {m['acc_stderr']:.3f}",
         f"{m['acc_norm']:.3f} ± {m['acc_norm_stderr']:.3f}" if "acc_norm" in m else f"ppl {m['ppl']:.1f}",
         f"{m['chance']:.3f}"] for task, m in tasks.items()])
    if "benchmarks" in run.figures:
        lines += ["", f"![Benchmarks]({run.figures['benchmarks']})"]
    cls = ev["classifier"]
    labels = class_labels(cls)
    lines += ["", f"### Classifier (test split; classes {', '.join(labels)})", "",
              "Precision, recall and F1 are the positive class's for two classes with `positive_label` set, "
              "else macro averages over the classes.", ""]
    lines += table(["model", "accuracy", "precision", "recall", "F1", "macro F1"], [
        [name, m["accuracy"], m["precision"], m["recall"], m["f1"], m.get("macro_f1", "")] for name, m in
        [("fine-tuned GPT", cls), ("TF-IDF + logistic regression", cls["baselines"]["tfidf_logreg"]),
         ("majority class", cls["baselines"]["majority"])]])
    if "per_class" in cls:
        lines += ["", *table(["class", "precision", "recall", "F1", "test items"],
                             [[label, m["precision"], m["recall"], m["f1"], m["support"]]
                              for label, m in cls["per_class"].items()])]
    if "confusion" in run.figures:
        lines += ["", f"![Confusion matrix]({run.figures['confusion']})"]
    ins = ev["instruct"]
    judge = ins.get("judge", {})
    lines += ["", "### Instruction following (test split)", ""]
    lines += table(["items", "response loss", "ROUGE-L", "exact match", "LLM judge"], [
        [ins["items"], ins["loss"], ins["rouge_l"], ins["exact_match"],
         f"{judge['score']:.1f} / 100 ({judge['model']})" if "score" in judge else judge.get("skipped", "")]])
    return lines + [""]


def section_alignment(run: CardInputs) -> list[str]:
    """How the preference pairs were made, what DPO did to them (held out), and the answers before and after."""
    if "align" not in run.metrics or "aligned" not in run.metrics["evaluate"]:
        return []
    al, params = run.metrics["align"], run.manifests.get("align", {}).get("params", {})
    ev_new, ev_old = run.metrics["evaluate"]["aligned"], run.metrics["evaluate"]["instruct"]
    built = al["pair_source"] == "built from the instruction set"
    how = ("built from the instruction set: for each prompt, chosen is the reference answer and rejected is the "
           "instruction model's own answer, sampled "
           f"(temperature {params.get('sample_temperature')}, top-k {params.get('sample_top_k')}); training pairs "
           "from its train split, held-out pairs from its val split, its test split never used"
           if built else "read from the preference sources, a hash of each id holding pairs out")
    held, cleaning = al["heldout"], al["cleaning"]
    lines = ["## Alignment", "",
             f"Direct preference optimisation (DPO) of the instruction model, itself the frozen reference "
             f"(β {params.get('beta')}, plus {params.get('nll_weight')} × the chosen answers' next-token loss; "
             f"{params.get('epochs')} epoch{'' if params.get('epochs') == 1 else 's'} at lr {params.get('lr')}). "
             f"The pairs were {how}. "
             f"{al['pairs']['train']} training and {al['pairs']['heldout']} held-out pairs after "
             f"{cleaning['duplicates_removed']} duplicates and {cleaning['decontaminated']} pairs sharing a "
             "13-word n-gram with a benchmark were dropped.", ""]
    lines += table(["held-out measure", "value", "for scale"], [
        ["preference accuracy", held["preference_accuracy"],
         f"the reference's own, by likelihood: {held['reference_accuracy']:.3f}"],
        ["reward margin (β-scaled log-ratio)", held["reward_margin"], "0 before training"],
        ["KL(aligned ‖ instruction model) per token", held["kl_per_token"], "0 before training"]])
    judge = ev_new.get("judge_pairwise", {})
    lines += ["", "On the instruction model's test prompts (greedy answers):", ""]
    lines += table(["model", "ROUGE-L", "exact match", "response loss", "judge win rate vs instruction model"], [
        ["instruction model", ev_old["rouge_l"], ev_old["exact_match"], ev_old["loss"], ""],
        ["aligned model", ev_new["rouge_l"], ev_new["exact_match"], ev_new["loss"],
         f"{judge['win_rate']:.3f} ({judge['judgements']} judgements, both orders; {judge['model']})"
         if "win_rate" in judge else judge.get("skipped", "")]])
    if gain := ev_new.get("rouge_l_gain"):
        lines += ["", f"ROUGE-L gain of the aligned model: {gain['mean']:+.3f} ({gain['confidence']:.0%} interval "
                      f"{gain['low']:+.3f} to {gain['high']:+.3f}, a paired bootstrap over the {gain['items']} test "
                      f"prompts; one seed: {'above zero' if gain['low'] > 0 else 'not above zero'})."]
    if run.aligned_samples:
        lines += ["", "The same test prompts, before and after alignment:", ""]
        lines += table(["instruction", "reference", "instruction model", "aligned model"],
                       [[s["instruction"], s["reference"], s["instruct"], s["aligned"]] for s in run.aligned_samples])
    return lines + [""]


def section_samples(run: CardInputs) -> list[str]:
    lines = ["## Sample generations", ""]
    if run.pretrain_samples:
        lines += ["Pretrained model, seeded samples at the last validation:", ""]
        lines += [f"> {s}".replace("\n", " ") for s in run.pretrain_samples] + [""]
    if run.instruct_samples:
        lines += ["Instruction model, greedy answers to test items:", ""]
        lines += table(["instruction", "reference", "generated"],
                       [[s["instruction"], s["reference"], s["generated"]] for s in run.instruct_samples])
    return lines + [""]


def section_limitations(run: CardInputs) -> list[str]:
    ev, pre = run.metrics["evaluate"], run.metrics["pretrain"]
    capped = sorted({m["items"] for m in ev["benchmarks"].values()})
    return ["## Known limitations", "",
            f"- A small model ({pre['params_with_embeddings']:,} parameters) trained on {pre['tokens_seen']:,} "
            "tokens: benchmark scores sit near chance and generations are fluent-looking but unreliable.",
            f"- Benchmarks are scored on capped item counts ({', '.join(map(str, capped))} items per task); the "
            "standard errors say how far apart two runs must be to differ.",
            "- WikiText-2 is scored after cleaning (tokenisation artefacts undone), so word-level perplexity "
            "is close to, not identical with, the figure on the raw published text.",
            *(["- The spam data are English SMS from 2011; the instruction data are chatterbot's small Q→A "
               "corpus, questions on Wikipedia leads and the spam task as instructions: a reply format, not "
               "reliable answers."] if {"sms_spam", "chatterbot"} <= set(run.metrics["download"]) else []),
            "- Not evaluated for bias, toxicity or factuality; not for production use.", ""]


def section_scaling(run: CardInputs) -> list[str]:
    """The ladder, the law fitted to it, and its prediction of pretrain's loss beside what pretrain measured."""
    if not run.scaling:
        return []
    law, pre = run.scaling, run.metrics["pretrain"]
    p, cost, fit = law["prediction"], law["cost"], law["law"]
    check = scaling_check(law, pre["val_loss"])
    ratios = [r["tokens"] / r["params"] for r in law["rungs"]]
    if fit["form"] == "joint":
        how = (f"at {min(ratios):.2g} to {max(ratios):.2g} tokens per parameter (`scaling@<rung>`), fitted as loss "
               f"= {law_formula(fit)} in parameters N and tokens D (rms error {fit['rmse']:.3f})")
    else:
        how = (f"at the same tokens per parameter (`scaling@<rung>`), fitted as loss = {law_formula(fit)} in "
               f"training FLOPs C (rms error {fit['rmse']:.3f}; {law_choice(fit)})")
    lines = ["## Predictable scaling", "",
             f"A ladder of {len(law['rungs'])} small runs of the same recipe {how}, predicted pretrain's final val "
             f"loss before it ran. The ladder cost {pct(cost['share_of_pretrain_flops'])} of pretrain's FLOPs; "
             f"pretrain is {cost['extrapolation']:.1f}× the largest rung.", ""]
    if "scaling_law" in run.figures:
        lines += [f"![scaling law]({run.figures['scaling_law']})", ""]
    lines += table(["rung", "layers × width", "parameters", "tokens", "FLOPs", "val loss", "fitted"],
                   [[r["rung"], f"{r['n_layer']} × {r['n_embd']}", r["params"], r["tokens"], float(r["flops"]),
                     r["val_loss"], r["fitted"]] for r in law["rungs"]])
    lines += ["", *table(["pretrain val loss", "value"], [
        ["predicted", f"{p['pretrain_val_loss']:.3f} ({p['confidence']:.0%} interval {p['low']:.3f}–{p['high']:.3f})"],
        ["measured", f"{pre['val_loss']:.3f}"],
        ["error", f"{pct(check['relative_error'])} "
                  f"({'inside' if check['inside_interval'] else 'outside'} the interval)"],
    ]), ""]
    lines += section_choice(law.get("choice") or {}, run.manifests.get("pretrain", {}))
    tasks = law.get("tasks") or {}
    if tasks:
        lines += ["Task-level: does each benchmark's accuracy follow the ladder's loss?", ""]
        lines += table(["task", "chance", *[r["rung"] for r in law["rungs"]], "change across ladder", "trend"],
                       [[task, t["chance"], *[t["acc"].get(r["rung"], "") for r in law["rungs"]],
                         f"{t['change_across_ladder'] + 0.0:+.3f}", t["trend"]] for task, t in tasks.items()])
        lines += [""]
    return lines


def section_choice(choice: dict[str, Any], pretrain_manifest: dict[str, Any]) -> list[str]:
    """The size the budget buys: every candidate's tokens and predicted loss, the choice, and whether pretrain
    took it (model.size from_ladder) or kept its fixed size."""
    if "chosen" not in choice:
        return [f"No size chosen: {choice.get('why') or 'the ladder has one tokens-per-parameter ratio'}.", ""]
    budget, chosen = choice["budget"], choice["chosen"]
    spent = (f"{budget['minutes']:g} training minutes on this machine kind (each size's measured tokens/s)"
             if budget.get("minutes") is not None else f"{budget['flops']:.3g} training FLOPs")
    size = ((pretrain_manifest.get("params") or {}).get("model") or {}).get("size", "fixed")
    took = ("Pretrain trained it (`model.size: from_ladder`)." if size == "from_ladder" else
            "Pretrain kept its fixed size (`model.size: fixed`); set `from_ladder` to train the choice.")
    lines = [f"The size the budget buys: {spent}, each candidate trained on the tokens it affords, its loss from "
             f"L(N, D) with a {choice['confidence']:.0%} interval. The chosen size has the lowest predicted loss, "
             f"and {pct(choice['chosen_share_of_resamples'])} of the bootstrap refits choose it too. {took}", ""]
    lines += table(["shape (layers × heads × width)", "parameters", "tokens", "tokens / parameter",
                    "predicted val loss", ""],
                   [[f"{r['n_layer']} × {r['n_head']} × {r['n_embd']}", r["params"], r["tokens"],
                     f"{r['tokens_per_param']:.2f}", f"{r['loss']:.3f} ({r['low']:.3f}–{r['high']:.3f})",
                     "chosen" if r is chosen or r == chosen else ""] for r in choice["candidates"]])
    return lines + [""]


def law_formula(fit: dict[str, Any]) -> str:
    if fit["form"] == "joint":
        return (f"{fit['E']:.3f} + {fit['A']:.4g} / N^{fit['alpha']:.3f} + {fit['B']:.4g} / "
                f"D^{fit['beta']:.3f}")
    power = f"{fit['A']:.3f} · (C / {fit['C0']:.3g})^-{fit['alpha']:.4f}"
    return power if fit["form"] == "power" else f"{fit['E']:.3f} + {power}"


def law_choice(fit: dict[str, Any]) -> str:
    """Why this form: each form's miss on the largest rung when fitted to the others."""
    errors = fit.get("holdout_errors") or {}
    if not errors:
        return f"the {fit['form']} form"
    return f"the {fit['form']} form, which missed the held-out largest rung by " + ", against ".join(
        f"{error:.3f} ({form})" for form, error in sorted(errors.items(), key=lambda kv: kv[0] != fit["form"]))


def scaling_check(law: dict[str, Any], measured: float) -> dict[str, Any]:
    """The prediction against the measured loss: relative error, and whether the interval holds it."""
    p = law["prediction"]
    return {"relative_error": abs(p["pretrain_val_loss"] - measured) / measured,
            "inside_interval": p["low"] <= measured <= p["high"]}


def section_lineage(run: CardInputs) -> list[str]:
    lines = ["## Lineage", "", "Each row is one stage's output as its manifest records it: the digest of its files, "
             "of the manifest itself (which every consumer recorded), and of the code that made it. The run "
             "behind each (MLflow run, commit, machine, times) is in `reports/runs/<stage>.json`; `scratchlm "
             "audit` re-verifies the hashes and checks each run record and MLflow run against them.", ""]
    lines += table(["stage", "outputs digest", "manifest digest", "code digest"], [
        [stage, outputs_digest(m), run.digests.get(stage, "")[:12], code_sha256(m.get("code") or {})[:12]]
        for stage, m in run.manifests.items()])
    return lines + [""]


def render(run: CardInputs, title: str = "scratchlm model card") -> str:
    sections = [section_summary, section_data, section_model, section_evaluation, section_alignment, section_scaling,
                section_samples, section_limitations, section_lineage]
    lines = [f"# {title}", ""]
    for section in sections:
        lines += section(run)
    return "\n".join(lines).rstrip() + "\n"
