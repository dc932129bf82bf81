"""The lm-evaluation-harness adapter against hand computations with our model, through lm_eval itself."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

pytest.importorskip("lm_eval", reason="the harness extra (lm-eval) is not installed")

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from scratchlm.interop.harness import ScratchLM, cut_at_stop  # noqa: E402
from scratchlm.model.gpt import GPT, GPTConfig, load_model, save_model  # noqa: E402
from scratchlm.tokenizer import EOT, train_bpe  # noqa: E402

BLOCK = 16
TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "Birds fly over the sea and the hills."] * 20
MC_DOCS = [
    {"question": "The cat sat on the", "choices": ["mat", "sea", "park"], "answer": 0},
    {"question": "A dog ran in the", "choices": ["hills", "park"], "answer": 1},
    {"question": "Birds fly over the sea and the hills and the cat sat on the mat while a dog ran in the",
     "choices": ["park", "mat and the cat"], "answer": 0},  # longer than block_size: truncated on the left
]
PPL_DOCS = [{"text": "The cat sat on the mat."},
            {"text": "Birds fly over the sea and the hills. A dog ran in the park. The cat sat on the mat. "
                     "A dog ran in the park and the cat sat on the mat."}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scratchlm_model")
    tokenizer = train_bpe(TEXTS, 300, 1, [EOT, "<|pad|>"])
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=BLOCK, n_layer=2, n_head=2,
                             n_embd=32)), root)
    tokenizer.save(str(root / "tokenizer.json"))
    return root


@pytest.fixture(scope="module")
def ours(model_dir: Path) -> tuple[GPT, Tokenizer]:
    return load_model(model_dir).eval(), Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def hand_loglikelihood(model: GPT, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """One unbatched, unpadded forward over the last block_size + 1 tokens (a continuation longer than
    block_size has only its last block_size tokens scored)."""
    seq = (context + continuation)[-(BLOCK + 1):]
    with torch.no_grad():
        logprobs = F.log_softmax(model(torch.tensor([seq[:-1]]))[0][0], dim=-1)
    n = min(len(continuation), len(seq) - 1)
    rows, targets = logprobs[-n:], torch.tensor(seq[-n:])
    return float(rows.gather(1, targets[:, None]).sum()), bool((rows.argmax(-1) == targets).all())


def hand_rolling(model: GPT, ids: list[int], eot: int) -> float:
    """Every token predicted once: targets in runs of block_size, each run read with block_size inputs
    ending just before its last target (the first run starts from <|endoftext|>)."""
    seq, total, first = [eot, *ids], 0.0, 1
    while first <= len(ids):
        last = min(first + BLOCK - 1, len(ids))
        start = max(0, last - BLOCK)
        with torch.no_grad():
            logprobs = F.log_softmax(model(torch.tensor([seq[start:last]]))[0][0], dim=-1)
        total += sum(float(logprobs[t - 1 - start, seq[t]]) for t in range(first, last + 1))
        first = last + 1
    return total


def split_ids(tokenizer: Tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids, checked to tokenize the same apart as together."""
    ctx, cont = tokenizer.encode(context).ids, tokenizer.encode(continuation).ids
    assert tokenizer.encode(context + continuation).ids == ctx + cont
    return ctx, cont


def request(kind: str, *args: object) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0)


def write_tasks(root: Path) -> Path:
    """A multiple-choice and a rolling log-likelihood task over local JSONL files (no network)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, docs in (("mc", MC_DOCS), ("ppl", PPL_DOCS)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    common = (f"dataset_path: json\ndataset_kwargs:\n  cache_dir: {root / 'cache'}\n  data_files:\n"
              "    test: {file}\ntest_split: test\n")
    (root / "tiny_mc.yaml").write_text(
        "task: tiny_mc\n" + common.format(file=root / "mc.jsonl") + "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: answer\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n", encoding="utf-8")
    (root / "tiny_ppl.yaml").write_text(
        "task: tiny_ppl\n" + common.format(file=root / "ppl.jsonl") + "output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\ndoc_to_target: "{{text}}"\nmetric_list:\n  - metric: word_perplexity\n', encoding="utf-8")
    return root


def test_loglikelihood_is_batched_and_equals_hand_computation(model_dir: Path, ours: tuple[GPT, Tokenizer]) -> None:
    model, tokenizer = ours
    pairs = [("The cat sat on the", " mat"), ("A dog", " ran in the park."),
             ("Birds fly over the sea and the hills and the cat sat on the mat while a dog ran in", " the park"),
             ("The", " cat sat on the mat and a dog ran in the park and birds fly over the sea")]
    lm = ScratchLM(pretrained=str(model_dir), batch_size=3)  # 4 requests of different lengths: 2 padded batches
    got = lm.loglikelihood([request("loglikelihood", c, x) for c, x in pairs])
    for (context, continuation), (logprob, greedy) in zip(pairs, got, strict=True):
        want, want_greedy = hand_loglikelihood(model, *split_ids(tokenizer, context, continuation))
        assert logprob == pytest.approx(want, abs=1e-4) and greedy == want_greedy
    assert len(tokenizer.encode(pairs[2][0] + pairs[2][1]).ids) > BLOCK + 1  # the left truncation was exercised


def test_empty_context_is_conditioned_on_endoftext(model_dir: Path, ours: tuple[GPT, Tokenizer]) -> None:
    model, tokenizer = ours
    (logprob, _), = ScratchLM(pretrained=str(model_dir)).loglikelihood([request("loglikelihood", "", "A dog ran")])
    want, _ = hand_loglikelihood(model, [tokenizer.token_to_id(EOT)], tokenizer.encode("A dog ran").ids)
    assert logprob == pytest.approx(want, abs=1e-4)


def test_loglikelihood_rolling_predicts_every_token_once(model_dir: Path, ours: tuple[GPT, Tokenizer]) -> None:
    model, tokenizer = ours
    texts = [d["text"] for d in PPL_DOCS] + [""]
    got = ScratchLM(pretrained=str(model_dir), batch_size=2).loglikelihood_rolling(
        [request("loglikelihood_rolling", t) for t in texts])
    eot = tokenizer.token_to_id(EOT)
    assert len(tokenizer.encode(texts[1]).ids) > 2 * BLOCK  # three windows, the last one overlapping
    for text, total in zip(texts, got, strict=True):
        assert total == pytest.approx(hand_rolling(model, tokenizer.encode(text).ids, eot), abs=1e-4)
    assert got[2] == 0.0


def test_generate_until_is_greedy_and_stops(model_dir: Path, ours: tuple[GPT, Tokenizer]) -> None:
    model, tokenizer = ours
    lm = ScratchLM(pretrained=str(model_dir))
    prompt = "The cat sat on the"
    ids = tokenizer.encode(prompt).ids
    greedy = model.generate(torch.tensor([ids]), 8, temperature=0.0, eos=tokenizer.token_to_id(EOT))[0, len(ids):]
    new = [int(i) for i in greedy]
    new = new[:new.index(tokenizer.token_to_id(EOT))] if tokenizer.token_to_id(EOT) in new else new
    full = tokenizer.decode(new)
    (text,) = lm.generate_until([request("generate_until", prompt, {"until": [], "max_gen_toks": 8})])
    assert text == full
    stop = full[len(full) // 2:][:2] or "x"
    (cut,) = lm.generate_until([request("generate_until", prompt, {"until": [stop], "max_gen_toks": 8})])
    assert cut == cut_at_stop(full, [stop]) and stop not in cut and len(cut) < len(full)


def test_model_args_are_checked(model_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['temperature'\]"):
        ScratchLM.create_from_arg_string(f"pretrained={model_dir},temperature=1")
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 'auto'"):
        ScratchLM.create_from_arg_string(f"pretrained={model_dir},batch_size=auto")
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        ScratchLM(pretrained=str(model_dir / "nowhere"))
    lm = ScratchLM.create_from_arg_string(f"pretrained={model_dir},batch_size=5", {"batch_size": 1, "device": None})
    assert lm.batch_size == 5 and lm.max_length == BLOCK  # model_args win over the CLI's default batch_size


def test_simple_evaluate_scores_local_tasks_like_hand_computation(model_dir: Path, ours: tuple[GPT, Tokenizer],
                                                                  tmp_path: Path) -> None:
    model, tokenizer = ours
    tasks = TaskManager(include_path=str(write_tasks(tmp_path / "tasks")), include_defaults=False)
    out = simple_evaluate(model="scratchlm", model_args=f"pretrained={model_dir},batch_size=2",
                          tasks=["tiny_mc", "tiny_ppl"], task_manager=tasks, log_samples=True, bootstrap_iters=0)
    hits = []
    for doc in MC_DOCS:
        scores = [hand_loglikelihood(model, *split_ids(tokenizer, doc["question"], " " + c))[0] for c in doc["choices"]]
        sample = next(s for s in out["samples"]["tiny_mc"] if s["doc"]["question"] == doc["question"])
        assert [r[0][0] for r in sample["resps"]] == pytest.approx(scores, abs=1e-4)
        hits.append(int(max(range(len(scores)), key=scores.__getitem__) == doc["answer"]))
    assert out["results"]["tiny_mc"]["acc,none"] == pytest.approx(sum(hits) / len(hits))
    eot = tokenizer.token_to_id(EOT)
    logprob = sum(hand_rolling(model, tokenizer.encode(d["text"]).ids, eot) for d in PPL_DOCS)
    words = sum(len(d["text"].split()) for d in PPL_DOCS)
    assert out["results"]["tiny_ppl"]["word_perplexity,none"] == pytest.approx(math.exp(-logprob / words), rel=1e-4)


@pytest.mark.slow
def test_scratchlm_lm_eval_command_runs_the_harness_cli(model_dir: Path, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "scratchlm.cli", "lm-eval", "--model_args", f"pretrained={model_dir},batch_size=4",
         "--tasks", "tiny_mc", "--include_path", str(tasks), "--output_path", str(tmp_path / "results")],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tiny_mc" in result.stdout and "acc" in result.stdout
    (written,) = (tmp_path / "results").rglob("results_*.json")
    saved = json.loads(written.read_text(encoding="utf-8"))
    assert saved["config"]["model"] == "scratchlm" and "acc,none" in saved["results"]["tiny_mc"]
