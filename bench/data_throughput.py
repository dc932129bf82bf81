"""MB/s and documents/s of the data stages on the default corpus, with 1 and 2 worker processes.

clean, dedup (the signature tasks apart from the global steps; exact-key normalisation vs hashing) and
tokenize (our encoder vs tiktoken's `encode_ordinary_batch` and HF's `encode_batch` on the same
texts, with a check that all three give the same ids). Then clean → dedup → tokenize on the corpus made
`--scale` times larger (each copy's documents perturbed so that they are new documents, 1 in 50 only
slightly, a near duplicate): each stage's peak RSS per process (the stage, and the largest of its
worker processes) and its MB/s per core beside the same figure on the default corpus.
Writes reports/bench/data_throughput.json.
Usage: python bench/data_throughput.py [--scale 10 100]   (run the DAG's data stages first)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _bench import Figure, best_of, report
from _memory import vm_hwm_mb
from tokenizers import Tokenizer

from scratchlm.config.data import CleanParams, DedupParams, TokenizeParams
from scratchlm.data.clean import clean_corpus
from scratchlm.data.dedup import dedup_corpus
from scratchlm.data.filters import words_of
from scratchlm.data.parallel import LocalExecutor
from scratchlm.data.roles import source_dirs
from scratchlm.io import document_shards, read_documents, write_documents
from scratchlm.tokenizer import EOT, batched, split_texts, timed, to_tiktoken
from scratchlm.tokens import TokenWriter, encode_documents, token_dtype, tokenize_splits

MB = 1e6


def clean_figures(raw: Path, params: CleanParams) -> list[Figure]:
    """`raw`: the download output's pretraining sources (data/raw/pretrain)."""
    sources = list(source_dirs(raw))
    rates = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            metrics, seconds = timed(clean_corpus, raw, Path(out), params.model_copy(update={"num_proc": workers}),
                                     sources)
        rates[workers] = (metrics["bytes_in"] / MB / seconds, metrics["docs_in"] / seconds)
    return [Figure(f"clean, {w} worker(s)", rates[w][0], "MB/s", note=f"{rates[w][1]:,.0f} docs/s") for w in (1, 2)] + [
        Figure("clean scaling 1 → 2 workers", rates[2][0] / rates[1][0], "x")]


def dedup_figures(clean: Path, raw: Path, params: DedupParams) -> list[Figure]:
    """The whole dedup on 1 and 2 workers: the signature tasks' MB/s, and the global steps' (LSH, confirmation,
    clusters) time, all executor tasks since 2026-12-07."""
    texts = [doc["text"] for path in document_shards(clean) for doc in read_documents(path)]
    size = sum(len(t.encode("utf-8")) for t in texts) / MB
    evaluation = [raw / "benchmark", raw / "instruction"]
    phases = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            metrics = dedup_corpus(clean, evaluation, Path(out), params, LocalExecutor(workers))
        phases[workers] = metrics["seconds"]
    rates = {w: size / phases[w]["signatures"] for w in (1, 2)}
    global_steps = {w: sum(phases[w].get(p, 0.0) for p in ("lsh", "confirm", "clusters")) for w in (1, 2)}
    normalised, norm_seconds = timed(lambda: [" ".join(words_of(t)).encode("utf-8") for t in texts])
    _, hash_seconds = timed(lambda: [hashlib.blake2b(t, digest_size=16).digest() for t in normalised])
    return [
        Figure("dedup signatures, 1 worker", rates[1], "MB/s"),
        Figure("dedup signatures, 2 workers", rates[2], "MB/s", target=15),
        Figure("dedup signatures scaling 1 → 2 workers", rates[2] / rates[1], "x", target=1.6),
        Figure("dedup global steps (LSH, confirm, clusters), 2 workers", len(texts) / global_steps[2], "docs/s",
               note=f"{global_steps[1]:.2f} s on 1 worker, {global_steps[2]:.2f} s on 2"),
        Figure("exact dedup: text normalisation", size / norm_seconds, "MB/s"),
        Figure("exact dedup: blake2b of normalised text", size / hash_seconds, "MB/s",
               note="normalisation, not hashing, bounds exact dedup" if hash_seconds < norm_seconds else ""),
    ]


def tokenize_figures(dedup: Path, tokenizer_dir: Path, params: TokenizeParams) -> list[Figure]:
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    encoding = to_tiktoken(tokenizer)
    texts = list(split_texts(dedup / "train"))
    size = sum(len(t.encode("utf-8")) for t in texts) / MB
    hf_ids, hf_seconds = timed(lambda: [e.ids for e in tokenizer.encode_batch(texts)])
    vocab, eot = tokenizer.get_vocab_size(), tokenizer.token_to_id(EOT)

    def our_encoder() -> None:
        with tempfile.TemporaryDirectory() as out, TokenWriter(Path(out) / "t.bin", token_dtype(vocab), vocab) as w:
            encode_documents(encoding, batched(iter(texts), params.batch_docs), w, eot, params.num_threads)

    tk_ids, tk_seconds = best_of(3, encoding.encode_ordinary_batch, texts, num_threads=params.num_threads)
    _, ours = best_of(3, our_encoder)
    _, one_thread = best_of(3, encoding.encode_ordinary_batch, texts, num_threads=1)
    same = hf_ids == tk_ids
    return [
        Figure("tokenize: HF encode_batch", size / hf_seconds, "MB/s"),
        Figure(f"tokenize: tiktoken, {params.num_threads} threads", size / tk_seconds, "MB/s"),
        Figure("tokenize: tiktoken thread scaling 1 → 2", one_thread / tk_seconds, "x"),
        Figure("tokenize: our stage's encoder", size / ours, "MB/s"),
        Figure("tokenize: ours / tiktoken", tk_seconds / ours, "x", target=0.9),
        Figure("tokenize: ids identical to HF (1 = yes)", float(same), "bool", target=1,
               note=f"{len(texts):,} train documents, {sum(map(len, tk_ids)):,} tokens"),
    ]


def scaled_corpus(raw: Path, dest: Path, scale: int) -> float:
    """The pretraining shards of `raw`, `scale` times: copy 0 as it is, every other copy's documents with a
    fifth of their words replaced (new documents to dedup, far below its threshold), but one in 50 with one
    word in a hundred replaced (a near duplicate it must find). Returns MB of text."""
    import random

    size, rng = 0, random.Random(0)
    pretrain = list(source_dirs(raw))
    for name in pretrain:
        (dest / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(raw / name / "source.json", dest / name / "source.json")
    for copy in range(scale):
        for name in pretrain:
            for shard in document_shards(raw / name):
                docs = [{**d, "id": f"{d['id']}~{copy}", "text": perturbed(rng, d["text"], copy, i)}
                        for i, d in enumerate(read_documents(shard))]
                size += sum(len(d["text"].encode("utf-8")) for d in docs)
                write_documents(dest / name / f"{shard.stem}-{copy:03d}.parquet", docs)
    return size / MB


def perturbed(rng, text: str, copy: int, index: int) -> str:
    if copy == 0:
        return text
    words = text.split(" ")
    share = 0.01 if index % 50 == 0 else 0.2
    for _ in range(max(1, int(len(words) * share))):
        position = rng.randrange(len(words))
        words[position] = words[rng.randrange(len(words))]
    return " ".join(words)


def memory_child(kind: str, args: list[str]) -> None:
    """Run one stage function in this (child) process; print its time and the peak RSS of this process
    and of the largest worker process it waited for."""
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    started = time.perf_counter()
    if kind == "clean":
        source, out = map(Path, args)
        metrics = clean_corpus(source, out, CleanParams(**raw["clean"]), list(source_dirs(source)))
        size = metrics["bytes_in"]
    elif kind == "dedup":
        clean, raw_dir, out = map(Path, args)
        evaluation = [raw_dir / "benchmark", raw_dir / "instruction"]  # as dvc.yaml's dedup decontaminates
        size = sum(len(d["text"].encode("utf-8")) for p in document_shards(clean) for d in read_documents(p))
        started = time.perf_counter()
        metrics = dedup_corpus(clean, evaluation, out, DedupParams(**raw["dedup"]))
    else:
        dedup, tokenizer_dir, out = map(Path, args)
        metrics = tokenize_splits(dedup, tokenizer_dir, out, TokenizeParams(**raw["tokenize"]))
        size = json.loads((out / "train.json").read_text())["text_bytes"]
    seconds = time.perf_counter() - started
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": vm_hwm_mb(), "worker_peak_rss_mb": workers, "seconds": seconds,
                      "mb": size / MB, "phases": metrics.get("seconds", {})}))


def scale_figures(raw: Path, tokenizer_dir: Path, scale: int, base: dict[str, float]) -> list[Figure]:
    """clean → dedup → tokenize on the corpus ×`scale`, one child process per stage; `base` holds each
    stage's MB/s per core at ×1 (the default corpus through the same code), filled in when `scale` is 1."""
    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    cores = {"clean": params["clean"]["num_proc"], "dedup": params["dedup"]["num_proc"],
             "tokenize": params["tokenize"]["num_threads"]}
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        size = scaled_corpus(raw / "pretrain", root / "raw", scale)
        figures = []
        for kind, args in (("clean", [root / "raw", root / "clean"]), ("dedup", [root / "clean", raw, root / "dedup"]),
                           ("tokenize", [root / "dedup", tokenizer_dir, root / "tokens"])):
            args[-1].mkdir()
            result = subprocess.run([sys.executable, __file__, "--memory-child", kind, *map(str, args)],
                                    capture_output=True, text=True)
            if result.returncode:
                raise SystemExit(f"{kind} at scale {scale} failed: {result.stderr.strip().splitlines()[-1]}")
            got = json.loads(result.stdout.strip().splitlines()[-1])
            peak = max(got["peak_rss_mb"], got["worker_peak_rss_mb"])
            per_core = got["mb"] / got["seconds"] / cores[kind]
            base.setdefault(kind, per_core)
            figures += [
                Figure(f"{kind} ×{scale} ({size:,.0f} MB): peak RSS", peak, "MB", target=1536, higher_is_better=False,
                       note=f"stage {got['peak_rss_mb']:,.0f} MB, largest worker {got['worker_peak_rss_mb']:,.0f} MB"),
                Figure(f"{kind} ×{scale}: MB/s per core", per_core, "MB/s",
                       note=", ".join(f"{phase} {sec:.0f} s" for phase, sec in got.get("phases", {}).items())),
            ]
            if scale != 1:
                figures.append(Figure(f"{kind} ×{scale} / ×1, MB/s per core", per_core / base[kind], "x", target=1.0))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, nargs="*", default=[1, 10, 100],
                        help="corpus sizes to run the stages at, the first the reference per-core rate (none: skip)")
    parser.add_argument("--memory-child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="reports/bench/data_throughput.json")
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], args.memory_child[1:])
        return
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    data = Path("data")
    clean = clean_figures(data / "raw" / "pretrain", CleanParams(**raw["clean"]))
    dedup = dedup_figures(data / "clean", data / "raw", DedupParams(**raw["dedup"]))
    tokenize = tokenize_figures(data / "dedup", Path("models/tokenizer"), TokenizeParams(**raw["tokenize"]))
    base: dict[str, float] = {}
    figures = clean + dedup + tokenize
    for scale in args.scale:
        figures += scale_figures(data / "raw", Path("models/tokenizer"), scale, base)
    report("data stages on the default corpus", figures, args.out)


if __name__ == "__main__":
    main()
