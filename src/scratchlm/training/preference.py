"""Preference pairs for the align stage: `{prompt, chosen, rejected}`, with the held-out ones set apart.

Two ways to get them:
- **from the preference sources** (download's `preference` role, e.g. a `local` source in the
  `preference_jsonl` format): each record's prompt (and input) is put in the instruction model's template;
  a hash of (seed, id) holds out `heldout` of the pairs;
- **built from the instruction set**, when there is no preference source: chosen is the reference answer,
  rejected is the instruction model's own answer to the same prompt, sampled (temperature, top-k, a
  seeded generator). Training pairs come from the instruction model's train split, held-out pairs from its
  val split; its test split, which evaluate answers, is never used. A sample equal to the reference is no
  pair. This teaches the model to prefer the references over what it says now (as self-play
  fine-tuning does), with no other model and no download.

Either way the pairs are deduplicated and decontaminated against the benchmarks, and written beside the
aligned model (`pairs.jsonl`), so the audit traces its scores to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from scratchlm.config.training import AlignParams
from scratchlm.data.finetune_sets import clean_set, normalized
from scratchlm.evaluation.sampling import generate_answers
from scratchlm.evaluation.splits import hash_order
from scratchlm.io import DataFormatError, read_set
from scratchlm.model.gpt import GPT
from scratchlm.prompts import format_prompt

Record = dict[str, Any]
SPLITS = ("train", "heldout")


def pair_text(pair: Record) -> str:
    """What a pair says (its duplicate key, and what decontamination looks in)."""
    return f"{pair['instruction']} {pair['input']} {pair['chosen']} {pair['rejected']}"


def source_pairs(files: Sequence[Path], template: dict[str, str], params: AlignParams) -> dict[str, list[Record]]:
    """The preference sources' pairs, split by a hash of (seed, id): `heldout` of them held out."""
    pairs = []
    for number, record in enumerate(read_set(list(files)), start=1):
        where = f"{', '.join(map(str, files))}: pair {record.get('id', number)}"
        if record.get("id") in (None, ""):
            raise DataFormatError(f"{where}: missing or empty 'id'")
        for field in ("prompt", "chosen", "rejected"):
            if not isinstance(record.get(field), str) or not record[field].strip():
                raise DataFormatError(f"{where}: missing or empty '{field}'")
        pairs.append({"id": str(record["id"]), "instruction": record["prompt"], "input": record.get("input") or "",
                      "chosen": record["chosen"], "rejected": record["rejected"]})
    cut = round(len(pairs) * (1 - params.heldout))
    ordered = hash_order(pairs, params.seed)
    return with_prompts({"train": ordered[:cut], "heldout": ordered[cut:]}, template)


def built_pairs(splits: dict[str, list[Record]], model: GPT, tokenizer: Tokenizer, template: dict[str, str],
                params: AlignParams) -> dict[str, list[Record]]:
    """Pairs from the instruction set's train and val splits: the reference against the model's own samples
    (`rejected_per_prompt` of them for a training prompt, one for a held-out prompt)."""
    chosen = {"train": hash_order(splits.get("train", []), params.seed)[: params.max_pairs],
              "heldout": hash_order(splits.get("val", []), params.seed)[: params.heldout_pairs]}
    generator = torch.Generator().manual_seed(params.seed)
    out: dict[str, list[Record]] = {}
    for split, records in chosen.items():
        pairs = with_prompts({split: [{"id": r["id"], "instruction": r["instruction"], "input": r.get("input", ""),
                                       "chosen": r["output"]} for r in records]}, template)[split]
        out[split] = []
        for draw in range(params.rejected_per_prompt if split == "train" else 1):
            samples = generate_answers(model, tokenizer, [p["prompt"] for p in pairs], params.max_new_tokens,
                                       temperature=params.sample_temperature, top_k=params.sample_top_k,
                                       generator=generator)
            out[split] += [{**p, "id": f"{p['id']}#{draw}" if draw else p["id"], "rejected": s}
                           for p, s in zip(pairs, samples, strict=True) if normalized(s) != normalized(p["chosen"])]
    return out


def with_prompts(splits: dict[str, list[Record]], template: dict[str, str]) -> dict[str, list[Record]]:
    """Each pair with its prompt in the instruction model's template (what the model was tuned to answer)."""
    return {split: [{**p, "prompt": format_prompt(template["prompt_template"], template["input_template"],
                                                  p["instruction"], p["input"])} for p in pairs]
            for split, pairs in splits.items()}


def capped(splits: dict[str, list[Record]], benchmark_dir: Path | None, params: AlignParams
           ) -> tuple[dict[str, list[Record]], dict[str, Any]]:
    """Duplicates and benchmark n-grams removed (across both splits, so no held-out pair has a training twin),
    then at most `max_pairs` training and `heldout_pairs` held-out pairs, in the seeded order."""
    tagged = [{**p, "split": split} for split in SPLITS for p in splits.get(split, [])]
    kept, cleaning = clean_set(tagged, pair_text, benchmark_dir, params.decontaminate_ngram)
    limits = {"train": params.max_pairs, "heldout": params.heldout_pairs}
    out = {split: hash_order([p for p in kept if p["split"] == split], params.seed)[: limits[split]]
           for split in SPLITS}
    if not out["train"] or not out["heldout"]:
        raise DataFormatError(f"no training or held-out preference pairs left ({len(out['train'])} and "
                              f"{len(out['heldout'])} after cleaning: {cleaning})")
    return out, cleaning
