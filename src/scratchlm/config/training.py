"""The training sections: the model, the optimiser, pretrain, both fine-tunes and align."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)

from scratchlm.config.base import EXECUTION, Section

# --------------------------------------------------------------------------------------------
# pretrain
# --------------------------------------------------------------------------------------------

Precision = Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]


SHAPE_KEYS = ("n_layer", "n_head", "n_embd")


class ModelParams(Section):
    """The GPT architecture (see scratchlm.model.gpt.GPTConfig; vocab_size comes from the tokenizer)."""

    size: Literal["fixed", "from_ladder"] = Field(
        default="fixed", description="fixed: n_layer, n_head and n_embd as set here; from_ladder: pretrain only, the "
                                     "shape and max_steps that scaling_fit chose for its budget from the ladder's "
                                     "L(N, D) (reports/scaling/law.json), so leave n_layer, n_head, n_embd and "
                                     "max_steps unset")
    n_layer: int | None = Field(default=4, ge=1, le=256, description="transformer blocks (null with size: "
                                                                     "from_ladder)")
    n_head: int | None = Field(default=4, ge=1, le=256, description="attention heads per block; must divide n_embd")
    n_embd: int | None = Field(default=256, ge=1, description="the residual stream's width (embedding size)")
    block_size: int = Field(default=256, ge=2, le=1 << 16, description="context length in tokens: the training window "
                                                                       "and the longest sequence the model reads")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout on attention weights, residual branches and "
                                                                "embeddings; 0 for pretraining on a large corpus")
    bias: bool = Field(default=False, description="gpt2 only: modern has no biases")
    architecture: Literal["gpt2", "modern"] = Field(
        default="gpt2", description="gpt2: the book's (learned positions, LayerNorm, GELU); modern: rotary "
                                    "positions, RMSNorm, QK-norm, SwiGLU, no biases")
    rope_theta: float = Field(default=10000.0, gt=0, description="modern: the rotary embeddings' base")

    @model_validator(mode="before")
    @classmethod
    def _ladder_sets_the_shape(cls, data: object) -> object:
        """With size from_ladder the shape is the ladder's to choose: a shape key set by hand is an error (it
        would be recorded but not trained), and the unset ones are null, not the fixed defaults."""
        if isinstance(data, dict) and data.get("size") == "from_ladder":
            if given := [key for key in SHAPE_KEYS if data.get(key) is not None]:
                raise ValueError(f"{given[0]}: chosen by the ladder with size: from_ladder (remove it, or set size: "
                                 "fixed)")
            data = {**data, **dict.fromkeys(SHAPE_KEYS)}
        return data

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelParams:
        if self.size == "from_ladder":
            return self
        if missing := [key for key in SHAPE_KEYS if getattr(self, key) is None]:
            raise ValueError(f"{missing[0]}: required with size: fixed")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.architecture == "modern" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"modern: rotary embeddings need an even head size (n_embd / n_head = "
                             f"{self.n_embd // self.n_head})")
        return self

    def gpt_fields(self) -> dict[str, object]:
        """GPTConfig's fields (all but `size`); a shape still left to the ladder is an error, not a default."""
        if self.size == "from_ladder":
            raise ValueError("model.size is from_ladder: apply the ladder's choice first (scratchlm.scaling.choice)")
        return self.model_dump(exclude={"size"})


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
    max_steps: int | None = Field(default=1000, ge=1, description="optimizer steps (null with model.size: "
                                                                   "from_ladder: the ladder's choice of tokens)")
    max_time_minutes: float | None = Field(default=None, gt=0, description="stop early after this wall time")
    deterministic: bool = Field(default=True, description="deterministic torch algorithms, so a rerun on the same "
                                                          "machine kind with the same thread count gives the same "
                                                          "weights; with compile on a multi-threaded CPU, false lets "
                                                          "the embedding gradient add in a racy order (runs differ "
                                                          "in the last bits)")
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
                                      "(null: a 1-second matmul probe in the training precision at the start; on "
                                      "CPU cores other processes kept busy, no peak and no MFU)")
    sample_prompts: list[str] = Field(
        default_factory=lambda: ["The history of", "In the early"], description="prompts continued at every validation "
                                                                                "(written to samples.txt)")
    sample_tokens: int = Field(default=40, ge=0, description="new tokens generated per sample prompt; 0 turns sampling "
                                                             "off")

    @model_validator(mode="before")
    @classmethod
    def _ladder_sets_the_steps(cls, data: object) -> object:
        """With model.size from_ladder the token budget is the ladder's choice too (see ModelParams)."""
        if isinstance(data, dict) and _size_of(data.get("model")) == "from_ladder":
            if data.get("max_steps") is not None:
                raise ValueError("max_steps: chosen by the ladder with model.size: from_ladder (remove it, or set "
                                 "model.size: fixed)")
            data = {**data, "max_steps": None}
        return data

    @model_validator(mode="after")
    def _schedule_fits(self) -> PretrainParams:
        if self.max_steps is None:
            if self.model.size != "from_ladder":
                raise ValueError("max_steps: required with model.size: fixed")
            return self
        if self.warmup_steps >= self.max_steps:
            raise ValueError("warmup_steps must be < max_steps")
        return self

    @model_validator(mode="after")
    def _fsdp_with_adamw(self) -> PretrainParams:
        """Muon orthogonalises whole matrices; FSDP hands the optimizer each rank's flat shard of them."""
        if self.strategy == "fsdp" and self.optimizer == "muon":
            raise ValueError("strategy fsdp needs optimizer adamw: Muon needs whole matrices, FSDP shards them")
        return self


def _size_of(model: object) -> object:
    """`size` of a model section as given: a mapping from params.yaml or a ModelParams already made."""
    return model.get("size") if isinstance(model, dict) else getattr(model, "size", None)


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
    rejected_per_prompt: int = Field(default=1, ge=1, le=8, description="pairs built from the instruction set: "
                                     "answers sampled per training prompt, each distinct one that is not the "
                                     "reference a rejected answer of its own pair (held-out prompts keep one)")
    max_new_tokens: int = Field(default=40, ge=1, description="longest sampled answer")
    decontaminate_ngram: int = Field(default=13, ge=1, description="pairs sharing a word n-gram this long "
                                     "with a benchmark item are dropped")

    @model_validator(mode="after")
    def _room_to_answer(self) -> AlignParams:
        if self.max_new_tokens >= self.max_length:
            raise ValueError("max_new_tokens must be < max_length")
        return self
