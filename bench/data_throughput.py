"""MB/s and documents/s of the data stages on the default corpus, with 1 and 2 worker processes.

clean, dedup (MinHash signatures and the LSH join apart; exact-key normalisation vs hashing) and
tokenize (our encoder vs tiktoken's `encode_ordinary_batch` and HF's `encode_batch` on the same
texts, with a check that all three give the same ids). Then peak memory of the dedup and tokenize
stages' functions on the corpus repeated `--scale` times. Writes reports/bench/data_throughput.json.
Usage: python bench/data_throughput.py [--scale 10]   (run the DAG's data stages first)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from _bench import Figure, best_of, report
from tokenizers import Tokenizer

from scratchlm.config import CleanParams, DedupParams, TokenizeParams
from scratchlm.data.clean import clean_corpus
from scratchlm.data.dedup import compute_signatures, dedup_corpus, near_duplicate_pairs
from scratchlm.data.filters import words_of
from scratchlm.io import document_shards, read_documents, source_roles, write_documents
from scratchlm.tokenizer import EOT, batched, split_texts, timed, to_tiktoken
from scratchlm.tokens import TokenWriter, encode_documents, token_dtype, tokenize_splits

MB = 1e6


def clean_figures(raw: Path, params: CleanParams) -> list[Figure]:
    sources = [name for name, role in source_roles(raw).items() if role == "pretrain"]
    rates = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            metrics, seconds = timed(clean_corpus, raw, Path(out), params.model_copy(update={"num_proc": workers}),
                                     sources)
        rates[workers] = (metrics["bytes_in"] / MB / seconds, metrics["docs_in"] / seconds)
    return [Figure(f"clean, {w} worker(s)", rates[w][0], "MB/s", note=f"{rates[w][1]:,.0f} docs/s") for w in (1, 2)] + [
        Figure("clean scaling 1 → 2 workers", rates[2][0] / rates[1][0], "x")]


def dedup_figures(clean: Path, params: DedupParams) -> list[Figure]:
    texts = [doc["text"] for path in document_shards(clean) for doc in read_documents(path)]
    size = sum(len(t.encode("utf-8")) for t in texts) / MB
    rates, sigs = {}, None
    for workers in (1, 2):
        sigs, seconds = timed(compute_signatures, clean, params.model_copy(update={"num_proc": workers}))
        rates[workers] = size / seconds
    _, lsh_seconds = timed(near_duplicate_pairs, sigs.signatures, params)
    normalised, norm_seconds = timed(lambda: [" ".join(words_of(t)).encode("utf-8") for t in texts])
    _, hash_seconds = timed(lambda: [hashlib.blake2b(t, digest_size=16).digest() for t in normalised])
    return [
        Figure("dedup signatures, 1 worker", rates[1], "MB/s"),
        Figure("dedup signatures, 2 workers", rates[2], "MB/s", target=15),
        Figure("dedup signatures scaling 1 → 2 workers", rates[2] / rates[1], "x", target=1.6),
        Figure("dedup LSH join", len(texts) / lsh_seconds, "docs/s"),
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


def scaled_corpus(clean: Path, dest: Path, scale: int) -> float:
    """`scale` copies of every clean shard, ids suffixed so each copy is its own document; returns MB."""
    size = 0
    for copy in range(scale):
        for shard in sorted(clean.rglob("*.parquet")):
            docs = [{**d, "id": f"{d['id']}~{copy}"} for d in read_documents(shard)]
            size += sum(len(d["text"].encode("utf-8")) for d in docs)
            target = dest / shard.relative_to(clean).with_name(f"{shard.stem}-{copy}.parquet")
            target.parent.mkdir(parents=True, exist_ok=True)
            write_documents(target, docs)
    return size / MB


def memory_child(kind: str, args: list[str]) -> None:
    """Run one stage function in this (child) process; the parent reads its peak RSS."""
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    if kind == "dedup":
        clean, raw_dir, out = map(Path, args)
        evaluation = {n: r for n, r in source_roles(raw_dir).items() if r != "pretrain"}
        dedup_corpus(clean, raw_dir, out, DedupParams(**raw["dedup"]), evaluation)
    else:
        dedup, tokenizer_dir, out = map(Path, args)
        tokenize_splits(dedup, tokenizer_dir, out, TokenizeParams(**raw["tokenize"]))
    print(json.dumps({"peak_rss_mb": vm_hwm_mb()}))


def vm_hwm_mb() -> float:
    """This process image's peak RSS (VmHWM, reset at exec). `ru_maxrss` would also count the memory of the
    parent it was forked from, which here holds the whole corpus."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def memory_figures(clean: Path, raw: Path, tokenizer_dir: Path, scale: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        size = scaled_corpus(clean, root / "clean", scale)
        figures = []
        for kind, args in (("dedup", [root / "clean", raw, root / "dedup"]),
                           ("tokenize", [root / "dedup", tokenizer_dir, root / "tokens"])):
            args[2].mkdir()
            result = subprocess.run([sys.executable, __file__, "--memory-child", kind, *map(str, args)],
                                    capture_output=True, text=True)
            if result.returncode:
                raise SystemExit(f"{kind} at scale {scale} failed: {result.stderr.strip().splitlines()[-1]}")
            peak = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]
            figures.append(Figure(f"{kind} peak RSS, corpus ×{scale} ({size:,.0f} MB)", peak, "MB"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=10, help="corpus copies for the memory figures (0: skip)")
    parser.add_argument("--memory-child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="reports/bench/data_throughput.json")
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], args.memory_child[1:])
        return
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    data = Path("data")
    figures = (clean_figures(data / "raw", CleanParams(**raw["clean"]))
               + dedup_figures(data / "clean", DedupParams(**raw["dedup"]))
               + tokenize_figures(data / "dedup", Path("models/tokenizer"), TokenizeParams(**raw["tokenize"])))
    if args.scale:
        figures += memory_figures(data / "clean", data / "raw", Path("models/tokenizer"), args.scale)
    report("data stages on the default corpus", figures, args.out)


if __name__ == "__main__":
    main()
