"""Reproducible audits: the same inputs and params give the same bytes, whatever the parallelism.

Data stages (clean, dedup) run with one and with two worker processes on a small synthetic corpus in
the download stage's raw format; the tokenizer is trained twice and the corpus tokenized with one and
two threads; a tiny deterministic fp32 pretraining run is repeated. Every output file is compared by
sha256 (manifests excluded: they hold timestamps and run ids), every weight with `torch.equal`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from scratchlm.config.data import CleanParams, DedupParams, TokenizeParams, TokenizerParams
from scratchlm.config.training import PretrainParams
from scratchlm.data.clean import clean_corpus
from scratchlm.data.dedup import dedup_corpus
from scratchlm.data.parallel import LocalExecutor
from scratchlm.io import make_document, sha256_file, write_jsonl, write_sharded
from scratchlm.lineage.runrecord import split_timing
from scratchlm.tokenizer import train_tokenizer
from scratchlm.tokens import tokenize_splits

STOP = ["the", "of", "and", "in", "to", "was", "is", "a", "for", "on", "with", "by", "as", "at", "from"]
WORDS = [f"{stem}{suffix}" for stem in ("river", "market", "castle", "history", "railway", "church", "village",
                                        "battle", "museum", "station", "harbour", "bridge", "school", "garden",
                                        "empire", "temple", "valley", "forest", "island", "theatre")
         for suffix in ("", "s", "side", "-land", "-wood")]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(STOP if i % 3 == 1 else WORDS) for i in range(rng.randint(8, 16))]
    return " ".join(words).capitalize() + "."


def article(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def wikitext(text: str) -> str:
    """WikiText-style spacing (` @-@ `, spaced punctuation) that the clean stage undoes."""
    return text.replace("-", " @-@ ").replace(".", " .")


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Two pretraining sources (one WikiText-formatted) of several shards each, with exact and near
    copies across sources, documents every filter drops, and a classification set to decontaminate against."""
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("raw")
    wiki, summaries = [], []
    for i in range(150):
        text = article(rng, rng.randint(4, 12))
        split = "val" if i % 25 == 0 else "test" if i % 31 == 0 else "train"
        wiki.append(make_document(f"wiki/{split}/{i:06d}", wikitext(text), "wiki",
                                  {"split": split, "title": f"T{i}", "format": "wikitext"}))
        if i % 5 == 0:  # exact copy (other case and spacing) in the second source
            summaries.append(make_document(f"sum/e{i}", text.upper().replace(" ", "  "), "sum", {"split": "train"}))
        elif i % 7 == 0:  # near copy
            words = text.split()
            words[len(words) // 2] = "cathedral"
            summaries.append(make_document(f"sum/n{i}", " ".join(words), "sum", {"split": "train"}))
    for i in range(120):
        text = article(rng, rng.randint(3, 9)) if i % 10 else "Too short to keep."
        summaries.append(make_document(f"sum/{i:05d}", text, "sum", {"split": "train"}))
    rng.shuffle(summaries)
    for name, docs, member in (("wiki", wiki, "train"), ("sum", summaries, "train")):
        write_sharded(root / name, member, iter(docs), shard_docs=23)
        (root / name / "source.json").write_text(json.dumps({"name": name, "role": "pretrain"}))
    # a classification set that shares passages with a few training articles: decontamination drops them
    leaked = [" ".join(doc["text"].replace(" @-@ ", "-").replace(" .", ".").split()[:20]) for doc in wiki[1:5]]
    (root / "sms").mkdir()
    write_jsonl(root / "sms" / "data.jsonl", [{"text": text, "label": "ham"} for text in [*leaked, "hello there"]])
    (root / "sms" / "source.json").write_text(json.dumps({"name": "sms", "role": "classification"}))
    return root, [root / "sms"]


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under root by relative path, manifests excluded (timestamps, run ids)."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


@pytest.fixture(scope="module")
def stages(raw, tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, Path, dict, dict]]:
    """clean → dedup with num_proc=1 and with num_proc=2: (clean dir, dedup dir, clean metrics, dedup metrics)."""
    raw_dir, evaluation = raw
    runs = {}
    for workers in (1, 2):
        base = tmp_path_factory.mktemp(f"proc{workers}")
        clean_dir, dedup_dir = base / "clean", base / "dedup"
        clean_dir.mkdir()
        dedup_dir.mkdir()
        clean_metrics = clean_corpus(raw_dir, clean_dir, CleanParams(num_proc=workers, dropped_samples_per_reason=3),
                                     ["sum", "wiki"])
        dedup_metrics = dedup_corpus(clean_dir, evaluation, dedup_dir,
                                     DedupParams(num_proc=workers, val_fraction=0.1, shard_docs=40))
        runs[workers] = clean_dir, dedup_dir, clean_metrics, dedup_metrics
    return runs


def test_clean_outputs_do_not_depend_on_worker_count(stages) -> None:
    (one, _, m1, _), (two, _, m2, _) = stages[1], stages[2]
    assert m1 == m2
    assert m1["drops"] and m1["docs_out"] > 100, "the corpus must exercise both the filters and the kept path"
    assert len([p for p in one.rglob("*.parquet")]) >= 10, "several shards, so two workers share the work"
    assert digests(one) == digests(two)


def test_dedup_outputs_do_not_depend_on_worker_count(stages) -> None:
    (_, one, _, m1), (_, two, _, m2) = stages[1], stages[2]
    assert split_timing(m1)[0] == split_timing(m2)[0], "every figure but the phases' seconds (the machine's)"
    assert m1["exact_duplicates_removed"] > 0 and m1["near_duplicates_removed"] > 0 and m1["decontaminated"] > 0
    assert digests(one) == digests(two)


@pytest.fixture(scope="module")
def tokenizers(stages, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    dedup_dir = stages[1][1]
    outs = []
    for attempt in range(2):
        out = tmp_path_factory.mktemp(f"tok{attempt}")
        train_tokenizer(dedup_dir, out, TokenizerParams(vocab_size=400, eval_docs=10))
        outs.append(out)
    return dedup_dir, outs


def test_tokenizer_training_is_byte_identical(tokenizers, tmp_path: Path) -> None:
    """Twice in this process, and once more in a fresh process with tokenizers' thread pool off and
    another hash seed (Rust hash maps are seeded per process: merge ties must not depend on them)."""
    import os
    import subprocess
    import sys

    dedup_dir, (a, b) = tokenizers
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    script = ("import sys; from pathlib import Path; from scratchlm.config.data import TokenizerParams; "
              "from scratchlm.tokenizer import train_tokenizer; "
              "train_tokenizer(Path(sys.argv[1]), Path(sys.argv[2]), TokenizerParams(vocab_size=400, eval_docs=10))")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, "-c", script, str(dedup_dir), str(tmp_path)], env=env, check=True, timeout=120)
    assert (tmp_path / "tokenizer.json").read_bytes() == (a / "tokenizer.json").read_bytes()


def test_tokenize_does_not_depend_on_thread_count(tokenizers, tmp_path: Path) -> None:
    dedup_dir, (tok, _) = tokenizers
    results = {}
    for threads, workers in ((1, 1), (2, 1), (1, 2)):  # tiktoken threads, and shards over 2 processes
        out = tmp_path / f"threads{threads}-workers{workers}"
        out.mkdir()
        metrics = tokenize_splits(dedup_dir, tok, out, TokenizeParams(num_threads=threads, batch_docs=16,
                                                                      check_docs=10), LocalExecutor(workers))
        results[threads, workers] = metrics, digests(out)
    assert results[1, 1][0]["train_tokens"] > 1000
    assert results[1, 1] == results[2, 1] == results[1, 2]
    assert {name for name in results[1, 1][1] if name.endswith(".json")} == {"train.json", "val.json", "test.json"}
    assert any(name.startswith("train/part-") and name.endswith(".bin") for name in results[1, 1][1])


TINY = {"model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.1}, "batch_size": 4,
        "max_steps": 12, "warmup_steps": 2, "val_every": 6, "val_windows": 2, "log_every": 3, "ckpt_every": 6,
        "sample_tokens": 4, "compile": False, "precision": "32-true", "num_threads": 2, "accelerator": "cpu",
        "devices": 1, "deterministic": True, "seed": 5}


@pytest.fixture
def restore_torch_state():
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.mark.slow
def test_two_deterministic_cpu_pretraining_runs_give_identical_weights(tokenizers, tmp_path: Path,
                                                                       restore_torch_state) -> None:
    """Same seed, threads, fp32, no compile, `deterministic: true`: bit-identical weights (dropout on,
    so the RNG path is covered too)."""
    from safetensors.torch import load_file

    from scratchlm.training.pretrain import pretrain

    dedup_dir, (tok, _) = tokenizers
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    tokenize_splits(dedup_dir, tok, tokens, TokenizeParams(check_docs=10))
    weights, losses = [], []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        metrics, _ = pretrain(tokens, tok, out, tmp_path / f"{run}-ckpt", PretrainParams(**TINY))
        assert metrics["steps"] == TINY["max_steps"]
        weights.append(load_file(out / "model.safetensors"))
        losses.append(metrics["val_loss"])
    a, b = weights
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert losses[0] == losses[1]
    assert (tmp_path / "a" / "samples.txt").read_bytes() == (tmp_path / "b" / "samples.txt").read_bytes()


#: One pretraining run in a fresh process (like one `dvc repro`): params JSON, tokens, tokenizer, out → sha256, loss.
PRETRAIN_PROCESS = """
import json, sys
from pathlib import Path
from scratchlm.config.training import PretrainParams
from scratchlm.io import sha256_file
from scratchlm.training.pretrain import pretrain
params, tokens, tokenizer, out = json.loads(sys.argv[1]), *map(Path, sys.argv[2:])
metrics, _ = pretrain(tokens, tokenizer, out / "model", out / "ckpt", PretrainParams(**params))
print(json.dumps({"sha256": sha256_file(out / "model" / "model.safetensors"), "val_loss": metrics["val_loss"],
                  "steps": metrics["steps"]}))
"""


@pytest.mark.slow
def test_compiled_pretraining_is_bit_identical_across_processes(tokenizers, tmp_path: Path) -> None:
    """The default recipe (params.yaml's `pretrain`: its precision, `compile: true`, Muon, modern architecture)
    at a tiny size, trained in two fresh processes on two threads: the same model.safetensors bytes.

    The first process compiles into an empty inductor cache (as on another machine), the second reuses it.
    `deterministic: true` is what makes it hold: without it inductor lowers the embedding's backward
    (`embedding_dense_backward` → `index_put_(accumulate=True)`) into a C++ kernel whose `#pragma omp for`
    over the tokens does `atomic_add` into the tied wte/lm_head gradient, so with two or more threads
    the float additions land in a racy order and every run differs in the last bits (val loss 5.0105
    against 5.0089 after 510 steps). Under `torch.use_deterministic_algorithms(True)` (Lightning's
    `deterministic=True`, params.yaml's `pretrain.deterministic: true`) inductor falls back to aten's serial
    `index_put_` there. The thread count stays
    part of the recipe: compiled reductions are split per thread, so 1 and 2 threads give other bits.
    """
    import os
    import subprocess
    import sys

    from scratchlm.config.loader import read_params_file

    recipe = read_params_file(Path(__file__).resolve().parents[1] / "params.yaml")["pretrain"]
    assert recipe["compile"] is True, "the default recipe compiles: this test is about the compiled path"
    dedup_dir, (tok, _) = tokenizers
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    tokenize_splits(dedup_dir, tok, tokens, TokenizeParams(check_docs=10))
    params = {**recipe, "model": {**recipe["model"], "size": "fixed", "n_layer": 1, "n_head": 2, "n_embd": 64,
                                  "block_size": 64},
              "batch_size": 8, "max_steps": 8, "warmup_steps": 2, "val_every": 8, "val_windows": 4, "log_every": 4,
              "ckpt_every": 8, "sample_tokens": 4, "num_threads": 2, "accelerator": "cpu", "devices": 1,
              "peak_tflops": 1.0}
    assert params["deterministic"] is True, "the default recipe's guarantee: the same weights on the same machine kind"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}  # empty: a cold compile first
    runs = []
    for run in ("cold", "warm"):
        done = subprocess.run([sys.executable, "-c", PRETRAIN_PROCESS, json.dumps(params), str(tokens), str(tok),
                               str(tmp_path / run)], env=env, check=True, timeout=300, capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert runs[0]["steps"] == params["max_steps"]
    assert any((tmp_path / "inductor").rglob("*.py")), "the runs must have gone through inductor"
    assert runs[0] == runs[1]
