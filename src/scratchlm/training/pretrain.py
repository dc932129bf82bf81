"""Pretraining: setup → fit → validate → export, with Lightning doing the engineering.

The same code trains on two CPU cores here and on many GPUs with DDP or FSDP: accelerator, devices,
nodes, strategy and precision are params handed to Lightning's Trainer as they are (except bf16 on a
CPU without native bf16, which falls back to fp32: see `effective_precision`). `last.ckpt` in
the checkpoint folder (a persistent DVC output) lets `dvc repro` resume an interrupted run; it is
used only if it was written by a run with the same params and data (see `scratchlm.training.checkpoint`).

Several nodes (`num_nodes` > 1): a launcher starts one process per device on every node (torchrun,
srun, or MASTER_ADDR, MASTER_PORT, NODE_RANK and LOCAL_RANK by hand: `scratchlm.launch` lists what
Lightning reads); each runs the same stage, `check_launch` refuses a start that would hang. Every rank
draws its own training windows (`RandomWindows`: together they are the one-process batch of world ×
batch_size), scores all the validation windows (so val_loss is the one-process number on every rank)
and waits at most `dist_timeout_minutes` for the others. Rank 0 alone exports, writes the checkpoint and,
in the stage, the manifest, run record and MLflow run. A rank that dies makes the others fail with
`PeerLostError` (one line), before anything is swapped in. The checkpoint folder must be one that every
node sees: Lightning loads `last.ckpt` on every rank, and `SameStart` stops ranks that resumed apart.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tokenizers import Tokenizer

from scratchlm.config.training import PretrainParams
from scratchlm.launch import PeerLostError, check_launch, local_rank, usable_cpus
from scratchlm.model.gpt import GPTConfig, save_model
from scratchlm.tokenizer import EOT, load_tokenizer
from scratchlm.training.callbacks import LogFn, SampleText, TrainingLog
from scratchlm.training.checkpoint import LAST, CheckpointOnInterrupt, SameStart, fingerprint, resume_path
from scratchlm.training.data import TokenDataModule, unigram_loss
from scratchlm.training.module import GPTModule, effective_precision, peak_tflops

if TYPE_CHECKING:
    from lightning.pytorch.strategies import Strategy


def run_fingerprint(params: PretrainParams, tokens_dir: Path, tokenizer_file: Path) -> str:
    """The checkpoint's fingerprint (see `checkpoint.fingerprint`): params, tokenizer, token headers, code."""
    return fingerprint(params, [tokenizer_file, *(tokens_dir / f"{split}.json" for split in ("train", "val"))])


def model_config(params: PretrainParams, vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, **params.model.gpt_fields())


def make_strategy(params: PretrainParams) -> str | Strategy:
    """The strategy named in params, with the process-group timeout (`auto` on one node is Lightning's pick).

    fsdp shards the whole model as one unit (Lightning's default without a wrap policy): the samples and
    the export gather it on rank 0 and run the plain modules (`GPTModule.gathered`), which torch refuses
    when the blocks are FSDP units of their own. Checkpoints hold the full state dict.
    """
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    timeout = timedelta(minutes=params.dist_timeout_minutes)
    if params.strategy == "fsdp":
        return FSDPStrategy(timeout=timeout, state_dict_type="full")
    if params.strategy == "ddp_spawn":
        return DDPStrategy(start_method="spawn", timeout=timeout)
    if params.strategy == "ddp" or params.num_nodes > 1:
        return DDPStrategy(timeout=timeout)
    return params.strategy


def build_trainer(params: PretrainParams, precision: str, ckpt_dir: Path, callbacks: list[L.Callback]) -> L.Trainer:
    """A Trainer from params alone; validation and checkpoints are counted in optimizer steps.

    No distributed sampler: training windows are split by `RandomWindows` itself, and every rank scores
    all the validation windows (a DistributedSampler would pad an uneven split with repeated windows).
    """
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                 every_n_train_steps=params.ckpt_every)
    return L.Trainer(
        accelerator=params.accelerator, devices=params.devices, num_nodes=params.num_nodes,
        strategy=make_strategy(params), precision=precision, use_distributed_sampler=False,
        max_steps=params.max_steps,
        max_time={"minutes": params.max_time_minutes} if params.max_time_minutes else None,
        accumulate_grad_batches=params.grad_accum, gradient_clip_val=params.grad_clip or None,
        val_check_interval=params.val_every * params.grad_accum, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, logger=False, deterministic=params.deterministic,
        callbacks=[checkpoint, SameStart(), *callbacks], enable_model_summary=False,
    )


#: What gloo's transport says (in a bare RuntimeError) when the rank at the other end is gone or silent.
LOST_PEER = ("closed by peer", "reset by peer", "Connection refused", "Broken pipe", "Timed out", "timed out")


@contextlib.contextmanager
def collective_failures(trainer: L.Trainer) -> Iterator[None]:
    """A rank that died or stopped answering shows here as a torch DistError (NCCL, the rendezvous store)
    or as gloo's RuntimeError naming the lost connection: turn it into one line naming it."""
    try:
        yield
    except RuntimeError as error:
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        lost = isinstance(error, torch.distributed.DistError) or any(word in text for word in LOST_PEER)
        if trainer.world_size == 1 or not lost:
            raise
        raise PeerLostError(f"rank {trainer.global_rank} of {trainer.world_size} lost another rank, which crashed, "
                            f"was killed or stopped answering (see its log): {backend_reason(text)}") from None


def backend_reason(text: str) -> str:
    """gloo's and NCCL's message without its source location and advice: `Read error [host]:port: Connection
    reset by peer.` of `[…/gloo/transport/tcp/pair.cc:537] Read error … GLHF!`."""
    text = re.sub(r"^\[[^\]]*\.\w+:\d+\]\s*", "", text)
    first = text.split(". ", 1)[0]
    return (first if first.endswith(".") else first + ".")[:240]


def bytes_per_token(tokens_dir: Path, split: str = "val") -> float:
    header = json.loads((tokens_dir / f"{split}.json").read_text(encoding="utf-8"))
    return header["text_bytes"] / max(1, header["tokens"])


def setup(params: PretrainParams, tokens_dir: Path, tokenizer: Tokenizer) -> tuple[GPTModule, TokenDataModule]:
    torch.set_num_threads(params.num_threads or usable_cpus())
    L.seed_everything(params.seed, workers=True, verbose=False)
    module = GPTModule(model_config(params, tokenizer.get_vocab_size()), params, params.max_steps)
    data = TokenDataModule(tokens_dir, params.model.block_size, params.batch_size, params.grad_accum,
                           params.seed, params.val_windows)
    return module, data


def pretrain(tokens_dir: Path, tokenizer_dir: Path, out_dir: Path, ckpt_dir: Path, params: PretrainParams,
             log_fn: LogFn | None = None, callbacks: list[L.Callback] | None = None,
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train, validate and export to `out_dir`; returns (metrics, loss-curve rows for the DVC plot).

    `callbacks` are added to the Trainer's own (profilers, early stopping, fault injection in tests).
    """
    check_launch(params.num_nodes, params.devices)
    tokenizer_file = tokenizer_dir / "tokenizer.json"
    tokenizer = load_tokenizer(tokenizer_file)
    module, data = setup(params, tokens_dir, tokenizer)
    counts = parameter_counts(module)
    tokens_per_device_step = params.batch_size * params.grad_accum * params.model.block_size
    precision = effective_precision(params.precision, params.accelerator)  # once: its fallback warns
    peak, peak_source = peak_tflops(params.peak_tflops, precision, params.accelerator, local_rank())
    log = TrainingLog(log_fn, params.log_every, tokens_per_device_step, module.model.flops_per_token(),
                      peak * 1e12 if peak else None, bytes_per_token(tokens_dir))
    samples = SampleText(lambda s: tokenizer.encode(s).ids, tokenizer.decode, params.sample_prompts,
                         params.sample_tokens, tokenizer.token_to_id(EOT), seed=params.seed)
    trainer = build_trainer(params, precision, ckpt_dir, [samples, log, CheckpointOnInterrupt(ckpt_dir / LAST),
                                               *(callbacks or [])])
    start = time.perf_counter()
    resume = resume_path(ckpt_dir, run_fingerprint(params, tokens_dir, tokenizer_file))
    with collective_failures(trainer):
        trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
        seconds = time.perf_counter() - start
        final = last_validation(log, trainer.global_step) or trainer.validate(module, datamodule=data,
                                                                               verbose=False)[0]
        with module.gathered():  # every rank: under FSDP the whole model is gathered on rank 0
            if trainer.is_global_zero:
                export(module, tokenizer_file, samples.samples, out_dir)
    metrics = summary(params, trainer, counts, final, seconds, tokens_per_device_step * trainer.world_size, log)
    metrics["peak_tflops_source"] = peak_source
    # the corpus pass is rank 0's alone: the other ranks' metrics are not written anywhere
    metrics["unigram_val_loss"] = unigram_loss(tokens_dir / "train.json", tokens_dir / "val.json",
                                               tokenizer.get_vocab_size()) if trainer.is_global_zero else None
    return metrics, log.loss_rows()


def parameter_counts(module: GPTModule) -> dict[str, int]:
    """Counted before the Trainer wraps the model: FSDP leaves each rank its shard of every weight."""
    return {"params": module.model.num_params(), "params_with_embeddings": module.model.num_params(non_embedding=False)}


def last_validation(log: TrainingLog, step: int) -> dict[str, float] | None:
    """The validation already run at the final step, if any (no need to score the same weights twice)."""
    done = [h for h in log.history if "val_loss" in h and h["step"] == step]
    return done[-1] if done else None


def export(module: GPTModule, tokenizer_file: Path, samples: list[str], out_dir: Path) -> None:
    """model.safetensors + config.json + tokenizer.json (+ samples.txt): everything to reload and generate."""
    save_model(module.model, out_dir)
    shutil.copy2(tokenizer_file, out_dir / "tokenizer.json")
    (out_dir / "samples.txt").write_text("\n\n".join(samples) + "\n", encoding="utf-8")


def summary(params: PretrainParams, trainer: L.Trainer, counts: dict[str, int], final: dict[str, float],
            seconds: float, tokens_per_step: int, log: TrainingLog) -> dict[str, Any]:
    import math

    val_loss = float(final["val_loss"])
    speeds = [h["tokens_per_s"] for h in log.history if "tokens_per_s" in h]
    tokens_per_s = sum(speeds) / len(speeds) if speeds else 0.0
    peak = log.peak_flops * trainer.world_size if log.peak_flops else None
    return {
        "steps": trainer.global_step,
        "precision": trainer.precision,
        "tokens_seen": trainer.global_step * tokens_per_step,
        "train_seconds": round(seconds, 2),
        "train_loss": next((h["train_loss"] for h in reversed(log.history) if "train_loss" in h), None),
        "val_loss": val_loss,
        "val_ppl": math.exp(min(val_loss, 50.0)),
        "val_bpb": val_loss / math.log(2) / log.bytes_per_token,
        "tokens_per_s": tokens_per_s,
        "mfu": tokens_per_s * log.flops_per_token / peak if peak else None,
        **counts,
        "flops_per_token": log.flops_per_token,
        "peak_tflops": log.peak_flops / 1e12 if log.peak_flops else None,
    }
