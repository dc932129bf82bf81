"""An optional LLM judge for the instruction model, through any OpenAI-compatible chat endpoint.

It scores each generated answer from 0 to 100 against the reference, the way LLMs-from-scratch
chapter 7 uses a larger model to grade a small one. Off by default: without an endpoint the
evaluation notes that it was skipped rather than pretending to a score.

`judge_pairwise` compares two models' answers to the same prompts (an aligned model against the
instruction model it came from). It asks about every pair in both orders, so a judge that favours
whichever response comes first (or second) cancels out instead of deciding the result.
"""

from __future__ import annotations

import os
import re
import statistics
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PROMPT = ("Given the input `{instruction}` and correct output `{reference}`, score the model response "
          "`{generated}` on a scale from 0 to 100, where 100 is the best score. Respond with the integer number "
          "only.")

PAIR_PROMPT = ("Two responses answer the same instruction. Compare them against the correct output.\n\n"
               "Instruction: {instruction}\n{input_line}"
               "Correct output: {reference}\n\n"
               "Response 1: {first}\n\n"
               "Response 2: {second}\n\n"
               "Which response is better? Respond with \"1\", \"2\" or \"tie\" only.")


class JudgeError(RuntimeError):
    """The judge endpoint failed or answered something that is not a score."""


def parse_score(text: str) -> float:
    match = re.search(r"\d+(?:\.\d+)?", text)
    if match is None or not 0 <= float(match.group()) <= 100:
        raise JudgeError(f"judge answered {text[:80]!r}, not a score from 0 to 100")
    return float(match.group())


def parse_choice(text: str) -> str:
    """The first word of `text` that is 1, 2 or tie (any case, surrounding punctuation ignored)."""
    for word in text.split():
        choice = word.strip(string.punctuation).lower()
        if choice in ("1", "2", "tie"):
            return choice
    raise JudgeError(f"judge answered {text[:80]!r}, not 1, 2 or tie")


def ask(session: Any, endpoint: str, model: str, prompt: str, timeout_s: float) -> str:
    """One chat completion; the reply's text."""
    import requests

    try:
        response = session.post(f"{endpoint.rstrip('/')}/chat/completions", timeout=timeout_s,
                                json={"model": model, "temperature": 0,
                                      "messages": [{"role": "user", "content": prompt}]})
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]
    except (requests.RequestException, KeyError, IndexError, ValueError) as error:
        raise JudgeError(f"judge {endpoint}: {type(error).__name__}: {error}") from None


@contextmanager
def judge_session(endpoint: str, api_key_env: str) -> Iterator[Any]:
    """A requests session for `endpoint`: retries on throttling and server errors, bearer key if set."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    with requests.Session() as session:
        session.mount(endpoint, HTTPAdapter(max_retries=Retry(total=2, backoff_factor=0.5,
                                                              status_forcelist=(429, 500, 502, 503, 504))))
        if key := os.environ.get(api_key_env):
            session.headers["Authorization"] = f"Bearer {key}"
        yield session


def judge_answers(rows: Sequence[dict[str, Any]], endpoint: str | None, model: str, api_key_env: str,
                  timeout_s: float = 30.0) -> dict[str, Any]:
    """Mean judge score over `rows` (instruction, reference, generated); a note instead when unset."""
    if not endpoint:
        return {"skipped": "no judge endpoint set (evaluate.judge.endpoint)"}
    with judge_session(endpoint, api_key_env) as session:
        scores = [parse_score(ask(session, endpoint, model, PROMPT.format(**row), timeout_s)) for row in rows]
    return {"score": statistics.fmean(scores) if scores else 0.0, "items": len(scores), "model": model}


def pair_prompt(row: dict[str, Any], first: str, second: str) -> str:
    """PAIR_PROMPT for `row` with `first` shown as Response 1 and `second` as Response 2."""
    input_line = f"Input: {row['input']}\n" if row.get("input") else ""
    return PAIR_PROMPT.format(instruction=row["instruction"], input_line=input_line, reference=row["reference"],
                              first=first, second=second)


def judge_pairwise(rows: Sequence[dict[str, Any]], endpoint: str | None, model: str, api_key_env: str,
                   timeout_s: float = 30.0) -> dict[str, Any]:
    """How often answer `a` beats answer `b` over `rows` (instruction, input, reference, a, b).

    Each row is judged twice, a shown first and then b shown first; a tie counts half a win, so a
    win_rate of 0.5 means no preference. `consistent` is the share of rows whose two orders agree.
    """
    if not endpoint:
        return {"skipped": "no judge endpoint set (evaluate.judge.endpoint)"}
    outcomes: list[tuple[str, str]] = []
    with judge_session(endpoint, api_key_env) as session:
        for row in rows:
            a_first = parse_choice(ask(session, endpoint, model, pair_prompt(row, row["a"], row["b"]), timeout_s))
            b_first = parse_choice(ask(session, endpoint, model, pair_prompt(row, row["b"], row["a"]), timeout_s))
            outcomes.append(({"1": "a", "2": "b", "tie": "tie"}[a_first], {"1": "b", "2": "a", "tie": "tie"}[b_first]))
    verdicts = [verdict for pair in outcomes for verdict in pair]
    wins, losses, ties = verdicts.count("a"), verdicts.count("b"), verdicts.count("tie")
    return {"win_rate": (wins + 0.5 * ties) / len(verdicts) if verdicts else 0.5,
            "wins": wins, "losses": losses, "ties": ties, "judgements": len(verdicts), "items": len(rows),
            "consistent": sum(first == second for first, second in outcomes) / len(outcomes) if outcomes else 0.0,
            "model": model}
