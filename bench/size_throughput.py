"""Tokens/s of the pretrain recipe at each candidate size, the table scaling_fit turns minutes into tokens with.

Each candidate of `scaling_fit.candidates` (params.yaml, or the file given) trains for `--steps` steps of
the pretrain recipe as pretrain runs it (compiled if pretrain compiles, its precision, batch, context,
validation, checkpoint and sample cadence), on the tokenize stage's data. Its tokens/s is tokens over
time across the logged intervals after the first (which holds the compile), the validations, checkpoints
and samples between them included, as a long run pays them every `val_every` steps (the default 210
steps hold two); `overhead_seconds` is the rest of
the wall time of its process (starting Python, importing torch and Lightning, building, compiling,
validating, exporting), which a budget of minutes pays besides its tokens: each candidate is measured in
a process of its own, as pretrain runs. Run it with nothing else on the cores: it measures this machine
kind, and it writes reports/bench/size_throughput.json, a dep of scaling_fit (a re-measurement changes
the choice only where it changes the numbers).
Usage: python bench/size_throughput.py [--steps 210] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import Figure, report

from scratchlm.config.loader import parse_section, read_params_file
from scratchlm.scaling.choice import throughput_recipe
from scratchlm.scaling.chosen import at_shape, shape_of
from scratchlm.scaling.ladder import model_size, tokens_per_step
from scratchlm.tokenizer import load_tokenizer
from scratchlm.training.pretrain import pretrain

OUT = Path("reports/bench/size_throughput.json")


def measure(recipe, shape: tuple[int, int, int], steps: int, vocab: int) -> dict:
    params = at_shape(recipe, shape, steps)
    rates: list[float] = []

    def log(metrics: dict, step: int) -> None:
        if "tokens_per_s" in metrics:
            rates.append(float(metrics["tokens_per_s"]))

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        metrics, _ = pretrain(Path("data/tokens"), Path("models/tokenizer"), Path(tmp) / "out", Path(tmp) / "ckpt",
                              params, log)
    wall = time.perf_counter() - started
    # the harmonic mean of the logged intervals after the first (which holds the compile): tokens over time,
    # the validations, checkpoints and samples between them included, as a long run pays them every val_every
    tps = len(rates[1:]) / sum(1 / rate for rate in rates[1:])
    n, per_token = model_size(params, vocab)
    return {"n_layer": shape[0], "n_head": shape[1], "n_embd": shape[2], "params": n, "flops_per_token": per_token,
            "tokens_per_s": round(tps, 1),
            "overhead_seconds": round(max(0.0, wall - steps * tokens_per_step(params) / tps), 1),
            "steps": steps, "train_tokens": steps * tokens_per_step(params), "wall_seconds": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=210)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--one", help="measure this shape (LxHxE) in this process and print its row as JSON")
    args = parser.parse_args()
    raw = read_params_file(Path(args.params))
    recipe = parse_section("pretrain", raw.get("pretrain"))
    if args.one:
        vocab = load_tokenizer(Path("models/tokenizer/tokenizer.json")).get_vocab_size()
        print(json.dumps(measure(recipe, tuple(int(v) for v in args.one.split("x")), args.steps, vocab)))
        return
    fit = parse_section("scaling_fit", raw.get("scaling_fit"))
    rows = []
    for shape in fit.candidates:  # each in a process of its own, as pretrain runs: its imports and compile count
        one = "x".join(map(str, shape_of(shape.output_params())))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--one", one, "--steps", str(args.steps), "--params",
                               args.params], check=True, capture_output=True, text=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["wall_seconds"] = round(time.perf_counter() - started, 1)
        row["overhead_seconds"] = round(max(0.0, row["wall_seconds"] - row["train_tokens"] / row["tokens_per_s"]), 1)
        rows.append(row)
    figures = [Figure(f"{r['n_layer']}x{r['n_head']}x{r['n_embd']} ({r['params'] / 1e6:.2f}M)", r["tokens_per_s"],
                      "tok/s", note=f"overhead {r['overhead_seconds']} s") for r in rows]
    report("Pretrain throughput by size", figures, OUT, extra={"recipe": throughput_recipe(recipe), "sizes": rows})


if __name__ == "__main__":
    main()
