"""Alignment: the DPO objective's arithmetic, pairs built from the instruction set or read from a preference
source, held-out pairs never trained on, and real training of a tiny model that learns the preferences."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from benchmark_dirs import benchmark_folder

from scratchlm.config.base import ConfigError
from scratchlm.config.loader import parse_section
from scratchlm.config.training import AlignParams, FinetuneInstructParams
from scratchlm.evaluation.downstream import evaluate_instruct
from scratchlm.evaluation.sampling import generate_answers
from scratchlm.io import DataFormatError, read_jsonl, write_jsonl
from scratchlm.model.gpt import GPT, GPTConfig, load_model, save_model
from scratchlm.prompts import IGNORE, format_prompt
from scratchlm.tokenizer import load_tokenizer, train_bpe
from scratchlm.training.align import align, dpo_terms, response_logps
from scratchlm.training.instruct import finetune_instruct

TEMPLATE = "Q: {instruction}{input_block}\nA: "
ANSWERS = [("What is two plus two?", "Four."), ("Say hello.", "Hello!"), ("Name a colour.", "Blue."),
           ("What is the capital of France?", "Paris.")]
BENCHMARK_QUERY = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat"


def test_dpo_terms_are_the_papers_formula() -> None:
    logps = torch.tensor([-1.0, -2.0, -3.0, -1.5])  # chosen 0, chosen 1, rejected 0, rejected 1
    reference = torch.tensor([-2.0, -2.0, -2.0, -2.0])
    losses, margin = dpo_terms(logps, reference, beta=0.5)
    expected = [0.5 * ((-1.0 + 2.0) - (-3.0 + 2.0)), 0.5 * ((-2.0 + 2.0) - (-1.5 + 2.0))]
    assert margin.tolist() == pytest.approx(expected)
    assert losses.tolist() == pytest.approx([math.log1p(math.exp(-m)) for m in expected])


def test_response_logps_sum_the_answer_tokens_only() -> None:
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    targets = torch.tensor([[IGNORE, 1, 0]])
    assert response_logps(logits, targets).item() == pytest.approx(math.log(0.75) + math.log(0.9))


def test_align_params_are_checked() -> None:
    with pytest.raises(ConfigError, match="align.beta: must be > 0"):
        parse_section("align", {"beta": 0})
    with pytest.raises(ConfigError, match="align: max_new_tokens must be < max_length"):
        parse_section("align", {"max_new_tokens": 64, "max_length": 64})


def records(n: int = 60) -> list[dict]:
    return [{"id": f"qa/{i:03d}", "instruction": f"{ANSWERS[i % 4][0]} Item {i // 4}.", "input": "",
             "output": ANSWERS[i % 4][1]} for i in range(n)]


@pytest.fixture(scope="module")
def instruct_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """A tiny instruction model that half-learned the answers (so its samples differ from the references)."""
    root = tmp_path_factory.mktemp("align")
    write_jsonl(root / "data.jsonl", records())
    tokenizer = train_bpe([format_prompt(TEMPLATE, "", r["instruction"]) + r["output"] for r in records()], 300, 1,
                          ["<|endoftext|>", "<|pad|>"])
    (root / "pre").mkdir()
    tokenizer.save(str(root / "pre" / "tokenizer.json"))
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=48, n_layer=1, n_head=2, n_embd=32)),
               root / "pre")
    (root / "instruct").mkdir()
    params = FinetuneInstructParams(epochs=2, batch_size=8, lr=3e-3, warmup_steps=2, max_length=32, max_new_tokens=4,
                                    prompt_template=TEMPLATE, precision="32-true", accelerator="cpu", num_threads=1,
                                    eval_items=2, split={"train": 0.6, "val": 0.2, "test": 0.2})
    finetune_instruct([root / "data.jsonl"], root / "pre", root / "instruct", root / "ckpt-i", params)
    (root / "instruct" / "manifest.json").write_text(json.dumps({"params": params.model_dump(mode="json")}))
    return [root / "data.jsonl"], root / "instruct"


def align_params(**overrides: object) -> AlignParams:
    base = {"epochs": 4, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "max_length": 32, "max_new_tokens": 6,
            "beta": 0.5, "precision": "32-true", "accelerator": "cpu", "num_threads": 1, "heldout": 0.25}
    return AlignParams(**{**base, **overrides})


@pytest.mark.slow
def test_built_pairs_learn_the_references_and_hold_out_the_val_split(instruct_model, tmp_path: Path) -> None:
    data, instruct = instruct_model
    out = tmp_path / "aligned"
    out.mkdir()
    logged: list[tuple[dict, int]] = []
    metrics = align(data, [], instruct, out, tmp_path / "ckpt", align_params(),
                    lambda m, e: logged.append((m, e)))
    split = {r["id"]: r["split"] for r in read_jsonl(instruct / "split.jsonl")}
    pairs = list(read_jsonl(out / "pairs.jsonl"))
    assert {split[p["id"]] for p in pairs if p["split"] == "train"} == {"train"}
    assert {split[p["id"]] for p in pairs if p["split"] == "heldout"} == {"val"}, "the test split is never used"
    assert all(p["chosen"] == records()[int(p["id"][3:])]["output"] for p in pairs), "chosen: the reference"
    assert all(p["rejected"] != p["chosen"] for p in pairs)
    held = metrics["heldout"]
    assert held["pairs"] == metrics["pairs"]["heldout"] > 0
    assert held["preference_accuracy"] >= 0.8 and held["reward_margin"] > 0 and held["kl_per_token"] > 0
    assert [e for _, e in logged] == [0, 1, 2, 3]
    # the aligned folder is a drop-in instruction model: evaluate scores it on the instruct test split
    assert {r["id"]: r["split"] for r in read_jsonl(out / "split.jsonl")} == split
    assert json.loads((out / "template.json").read_text())["prompt_template"] == TEMPLATE
    (out / "manifest.json").write_text(json.dumps({"params": align_params().model_dump(mode="json")}))
    scores, rows = evaluate_instruct(data, out, None)
    assert scores["items"] == sum(1 for s in split.values() if s == "test") == len(rows)
    few, firsts = evaluate_instruct(data, out, 3)
    assert few["generated_items"] == 3 and firsts == rows[:3], "a capped evaluation answers the same first items"
    model, tokenizer = load_model(out), load_tokenizer(out / "tokenizer.json")
    for row in firsts:  # each answer is the model's answer to that row's prompt
        prompt = format_prompt(TEMPLATE, "", row["instruction"], row["input"])
        assert row["generated"] == generate_answers(model, tokenizer, [prompt], 6)[0]
    assert load_model(out).config == load_model(instruct).config
    samples = list(read_jsonl(out / "samples.jsonl"))
    assert samples and set(samples[0]) == {"instruction", "input", "reference", "instruct", "aligned"}


def test_several_rejected_answers_per_training_prompt_make_more_pairs(instruct_model) -> None:
    """rejected_per_prompt: more of the model's own answers per training prompt, each a pair of its own (its id
    the prompt's, #draw); the first draw is the one-sample pairs' own, the held-out prompts keep one each."""
    from scratchlm.evaluation.splits import stored_splits
    from scratchlm.training.preference import built_pairs

    data, instruct = instruct_model
    model, tokenizer = load_model(instruct).eval(), load_tokenizer(instruct / "tokenizer.json")
    template = json.loads((instruct / "template.json").read_text())
    splits = stored_splits(data, instruct)
    one = built_pairs(splits, model, tokenizer, template, align_params(sample_temperature=1.5))
    three = built_pairs(splits, model, tokenizer, template, align_params(sample_temperature=1.5, rejected_per_prompt=3))
    assert three["train"][: len(one["train"])] == one["train"]
    assert len(one["train"]) < len(three["train"]) <= 3 * len(splits["train"])
    assert len(three["heldout"]) <= len(splits["val"])
    train_ids = {r["id"] for r in splits["train"]}
    assert {p["id"].partition("#")[0] for p in three["train"]} <= train_ids
    assert {p["id"].partition("#")[2] for p in three["train"]} <= {"", "1", "2"}
    assert all(p["rejected"] != p["chosen"] for p in three["train"])


def preference_source(root: Path, n: int = 40) -> list[Path]:
    pairs = [{"id": f"pref/{i:03d}", "prompt": f"{ANSWERS[i % 4][0]} Item {i // 4}.", "chosen": ANSWERS[i % 4][1],
              "rejected": ANSWERS[(i + 1) % 4][1]} for i in range(n)]
    pairs.append({"id": "pref/leak", "prompt": BENCHMARK_QUERY, "chosen": "Yes.", "rejected": "No."})
    write_jsonl(root / "pairs.jsonl", pairs)
    return [root / "pairs.jsonl"]


@pytest.mark.slow
def test_preference_source_pairs_are_split_by_hash_and_decontaminated(instruct_model, tmp_path: Path) -> None:
    data, instruct = instruct_model
    out = tmp_path / "aligned"
    out.mkdir()
    metrics = align(data, preference_source(tmp_path), instruct, out, tmp_path / "ckpt", align_params(epochs=2),
                    benchmark_dir=benchmark_folder(tmp_path, "piqa", BENCHMARK_QUERY))
    assert metrics["cleaning"]["decontaminated"] == 1 and metrics["cleaning"]["decontaminated_by"] == {"piqa": 1}
    pairs = list(read_jsonl(out / "pairs.jsonl"))
    assert "pref/leak" not in {p["id"] for p in pairs}
    assert metrics["pairs"] == {"train": 30, "heldout": 10}
    assert metrics["pair_source"] == "preference sources"


def test_a_pair_without_a_chosen_answer_is_named(instruct_model, tmp_path: Path) -> None:
    data, instruct = instruct_model
    write_jsonl(tmp_path / "pairs.jsonl", [{"id": "p/1", "prompt": "Hi?", "chosen": " ", "rejected": "No."}])
    (tmp_path / "out").mkdir()
    with pytest.raises(DataFormatError, match="pairs.jsonl: pair p/1: missing or empty 'chosen'"):
        align(data, [tmp_path / "pairs.jsonl"], instruct, tmp_path / "out", tmp_path / "ckpt", align_params())
    write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Hi?", "chosen": "Yes.", "rejected": "No."}])
    with pytest.raises(DataFormatError, match="pairs.jsonl: pair 1: missing or empty 'id'"):
        align(data, [tmp_path / "pairs.jsonl"], instruct, tmp_path / "out", tmp_path / "ckpt", align_params())
