"""An lm-evaluation-harness model adapter, so any lm_eval task scores our checkpoints as they are.

lm_eval 0.4 finds models only in its registry and loads no plugins, so its own `lm_eval` command does
not know `scratchlm`; `scratchlm lm-eval ARGS...` imports this module (which registers the adapter) and
then runs lm_eval's CLI with ARGS unchanged (adding `--model scratchlm` when ARGS name no model):

    scratchlm lm-eval --model_args pretrained=models/pretrain,batch_size=8,device=cpu --tasks lambada_openai

From Python, import this module and call `lm_eval.simple_evaluate(model="scratchlm", model_args=...)`, or
pass `ScratchLM(pretrained=...)` itself as `model`. Needs the `harness` extra (`lm-eval`).

Scoring follows lm_eval's HF model and is done by `scratchlm.evaluation.loglik`: contexts are truncated
on the left to the model's block size, an empty context is conditioned on `<|endoftext|>`, rolling
log-likelihoods use disjoint windows with the longest possible context, and generation is greedy unless a
task asks for `do_sample`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401 - lm_eval registers its own models only into an empty registry
import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from scratchlm.evaluation.loglik import rolling_windows, score_requests
from scratchlm.generate import load_for_generation
from scratchlm.tokenizer import EOT

#: A request as `_loglikelihood_tokens` gets it: (cache key or None, context ids, continuation ids).
TokenRequest = tuple[Any, list[int], list[int]]

logger = logging.getLogger(__name__)


@register_model("scratchlm")
class ScratchLM(TemplateLM):
    """A scratchlm model folder (model.safetensors + config.json + tokenizer.json) as an lm_eval model."""

    def __init__(self, pretrained: str = "models/pretrain", batch_size: int | str = 8, device: str = "cpu",
                 max_gen_toks: int = 256, max_batch_size: int | None = None, **unknown: Any) -> None:
        super().__init__()
        if unknown:
            raise ValueError(f"scratchlm model_args: unknown key(s) {sorted(unknown)} "
                             "(expected pretrained, batch_size, device, max_gen_toks)")
        self._device = resolve_device(device)
        self.model, self.tokenizer = load_for_generation(Path(pretrained), str(self._device))
        if self.tokenizer.token_to_id(EOT) is None:
            raise ValueError(f"{Path(pretrained) / 'tokenizer.json'}: has no {EOT} token (lm_eval conditions on it)")
        self._batch_size = positive_int("batch_size", batch_size)
        self.max_gen_toks = positive_int("max_gen_toks", max_gen_toks)
        self.model_path = str(pretrained)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> ScratchLM:
        return cls.create_from_arg_obj(lm_utils.simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict | None = None) -> ScratchLM:
        """Like LM's, except that a key given both in model_args and as a CLI flag (the CLI always sends
        batch_size) takes model_args' value instead of raising a duplicate-argument TypeError."""
        flags = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**{**flags, **arg_dict})

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.token_to_id(EOT)

    @property
    def max_length(self) -> int:
        return self.model.config.block_size

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def tokenizer_name(self) -> str:
        return self.model_path

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return self.tokenizer.encode(string, add_special_tokens=False).ids

    def tok_decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    # ------------------------------------------------------------------------------ log-likelihood

    def _loglikelihood_tokens(self, requests: list[TokenRequest], disable_tqdm: bool = False,
                              **kwargs: Any) -> list[tuple[float, bool]]:
        """(log P(continuation | context), whether greedy decoding gives the continuation) per request, in
        request order, from `loglik.score_requests`; an empty continuation scores (0.0, True)."""
        scored = score_requests(self.model, [(context, continuation) for _, context, continuation in requests],
                                self.batch_size, "scratchlm loglikelihood", progress=not disable_tqdm)
        results = [(result.loglik, result.is_greedy) for result in scored]
        for (key, _, _), result in zip(requests, results, strict=True):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, result)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of each whole text: `loglik.rolling_windows` with stride block_size over
        `<|endoftext|>` + text, i.e. lm_eval's disjoint windows of block_size predictions, each with as much
        context as fits; the windows of all texts are scored in shared batches and summed per text."""
        pairs: list[tuple[list[int], list[int]]] = []
        owners: list[int] = []
        for index, request in enumerate(requests):
            ids = [self.prefix_token_id, *self.tok_encode(request.args[0])]
            for window, scored in rolling_windows(ids, self.max_length, self.max_length):
                pairs.append((window[:-scored], window[-scored:]))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, result in zip(owners, score_requests(self.model, pairs, self.batch_size,
                                                        "scratchlm loglikelihood_rolling",
                                                        progress=not disable_tqdm), strict=True):
            totals[owner] += result.loglik
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (request.args[0],), total)
        return totals

    # ------------------------------------------------------------------------------ generation

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Continue each context until a stop string, `<|endoftext|>` or `max_gen_toks` tokens."""
        outputs = []
        for request in tqdm(requests, disable=disable_tqdm, desc="scratchlm generate_until"):
            context, gen_kwargs = request.args
            text = self._generate(context, dict(gen_kwargs))
            self.cache_hook.add_partial("generate_until", request.args, text)
            outputs.append(text)
        return outputs

    def _generate(self, context: str, gen_kwargs: dict[str, Any]) -> str:
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        sample = bool(gen_kwargs.get("do_sample", False))
        temperature = float(gen_kwargs.get("temperature", 1.0)) if sample else 0.0
        ids = self.tok_encode(context)[-self.max_length:] or [self.eot_token_id]
        new: list[int] = []
        text = ""
        stream = self.model.stream(torch.tensor([ids], device=self._device),
                                   int(gen_kwargs.get("max_gen_toks", self.max_gen_toks)), temperature,
                                   gen_kwargs.get("top_k"), gen_kwargs.get("top_p"), self.eot_token_id)
        for next_id in stream:
            if int(next_id[0, 0]) == self.eot_token_id:
                break
            new.append(int(next_id[0, 0]))
            text = self.tok_decode(new)
            if any(stop in text for stop in until):
                break
        return cut_at_stop(text, until)


def cut_at_stop(text: str, until: list[str]) -> str:
    """`text` up to the earliest stop string (lm_eval does not strip them itself)."""
    hits = [text.find(stop) for stop in until if stop and stop in text]
    return text[:min(hits)] if hits else text


def resolve_device(device: str) -> torch.device:
    """`device`, or the CPU when it names CUDA on a machine without it (lm_eval's CLI sends cuda:0 by default)."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        logger.warning("scratchlm: device %s requested but CUDA is not available; using cpu", device)
        return torch.device("cpu")
    return torch.device(device)


def positive_int(key: str, value: Any) -> int:
    """A model_args value as a positive int, or a one-line error naming the key ('auto' is not supported)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ValueError(f"scratchlm model_args: {key} must be a positive integer, got {value!r}")
    return number


def run_cli(args: list[str]) -> None:
    """lm_eval's own CLI on `args` with this adapter registered; `run` (lm_eval's default subcommand) gets
    `--model scratchlm` when `args` name no model."""
    from lm_eval.__main__ import cli_evaluate

    command = args[:1] if args[:1] in (["run"], ["ls"], ["validate"]) else ["run"]
    rest = args[len(command):] if args[:1] == command else args
    if command == ["run"] and not any(arg == "--model" or arg.startswith("--model=") for arg in rest):
        rest = ["--model", "scratchlm", *rest]
    saved, sys.argv = sys.argv, ["lm_eval", *command, *rest]
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
