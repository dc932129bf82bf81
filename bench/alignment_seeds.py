"""Does alignment help, beyond the luck of one seed and of which prompts were drawn?

Aligns the committed instruction model (models/instruct) with the params.yaml `align` recipe at
`--seeds` seeds (align.seed, then +1, +2, ...), scores each aligned model's greedy answers on the
instruction model's test prompts by ROUGE-L (as the evaluate stage does, `evaluate.instruct_items` of
them), and compares each with the instruction model's answers on the same prompts: a paired bootstrap
over the prompts per seed, and over the prompts of the seeds' mean difference for all of them together.
Targets (issue 30): the mean gain ≥ +0.02 and its 90% interval above zero, over ≥ 3 seeds.
`--set KEY=VALUE` (YAML values, repeatable) tries a change of the recipe before it goes into params.yaml.
Writes reports/bench/alignment_seeds.json.   Usage: python bench/alignment_seeds.py [--seeds 3] [--set beta=0.2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from _bench import Figure, report

from scratchlm.config.training import AlignParams
from scratchlm.data.roles import role_files, role_folder, source_roles
from scratchlm.evaluation.downstream import evaluate_instruct
from scratchlm.evaluation.metrics import paired_bootstrap
from scratchlm.training.align import align

OUT = Path("reports/bench/alignment_seeds.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an align key changed")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    changed = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set)}
    raw["align"] = {**raw["align"], **changed}
    items = raw["evaluate"]["instruct_items"]
    instruction = role_files(Path("data/raw/instruction"), "instruction")
    has_pairs = "preference" in source_roles(Path("data/raw/preference")).values()
    preference = role_files(Path("data/raw/preference"), "preference") if has_pairs else []
    _, base_rows = evaluate_instruct(instruction, Path("models/instruct"), items)
    base = [r["rouge_l"] for r in base_rows]
    figures, gains, runs = [], [], {}
    for seed in range(raw["align"]["seed"], raw["align"]["seed"] + args.seeds):
        params = AlignParams(**{**raw["align"], "seed": seed})
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "aligned"
            out.mkdir()
            align(instruction, preference, Path("models/instruct"), out, Path(tmp) / "ckpt", params, None,
                  benchmark_dir=role_folder(Path("data/raw/benchmark"), "benchmark"))
            # what evaluate reads of a model's making (its answers' length), as the stage's manifest records it
            (out / "manifest.json").write_text(json.dumps({"params": params.output_params()}), encoding="utf-8")
            metrics, rows = evaluate_instruct(instruction, out, items)
        assert [r["id"] for r in rows] == [r["id"] for r in base_rows], "the same prompts, in the same order"
        new = [r["rouge_l"] for r in rows]
        gain = paired_bootstrap(new, base, seed=seed)
        gains.append(np.asarray(new) - np.asarray(base))
        runs[seed] = {**gain, "rouge_l": metrics["rouge_l"], "seconds": round(time.perf_counter() - started, 1)}
        figures.append(Figure(f"seed {seed}: ROUGE-L gain", gain["mean"], "", note=f"90% {gain['low']:+.3f} to "
                              f"{gain['high']:+.3f} over {gain['items']} prompts"))
    pooled = paired_bootstrap(np.mean(gains, axis=0), np.zeros(len(base)))
    figures.append(Figure(f"mean gain over {args.seeds} seeds", pooled["mean"], "", target=0.02,
                          note=f"90% {pooled['low']:+.3f} to {pooled['high']:+.3f} (prompts resampled)"))
    figures.append(Figure("its 90% interval's low end", pooled["low"], "", target=0.0))
    report("Alignment gain over seeds", figures, args.out, extra={
        "instruction_rouge_l": float(np.mean(base)), "changed": changed, "seeds": runs, "pooled": pooled})


if __name__ == "__main__":
    main()
