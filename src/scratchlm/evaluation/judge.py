"""An optional LLM judge for the instruction model, through any OpenAI-compatible chat endpoint.

It scores each generated answer from 0 to 100 against the reference, the way LLMs-from-scratch
chapter 7 uses a larger model to grade a small one. Off by default: without an endpoint the
evaluation notes that it was skipped rather than pretending to a score.
"""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import Sequence
from typing import Any

PROMPT = ("Given the input `{instruction}` and correct output `{reference}`, score the model response "
          "`{generated}` on a scale from 0 to 100, where 100 is the best score. Respond with the integer number "
          "only.")


class JudgeError(RuntimeError):
    """The judge endpoint failed or answered something that is not a score."""


def parse_score(text: str) -> float:
    match = re.search(r"\d+(?:\.\d+)?", text)
    if match is None or not 0 <= float(match.group()) <= 100:
        raise JudgeError(f"judge answered {text[:80]!r}, not a score from 0 to 100")
    return float(match.group())


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


def judge_answers(rows: Sequence[dict[str, Any]], endpoint: str | None, model: str, api_key_env: str,
                  timeout_s: float = 30.0) -> dict[str, Any]:
    """Mean judge score over `rows` (instruction, reference, generated); a note instead when unset."""
    if not endpoint:
        return {"skipped": "no judge endpoint set (evaluate.judge.endpoint)"}
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    with requests.Session() as session:
        session.mount(endpoint, HTTPAdapter(max_retries=Retry(total=2, backoff_factor=0.5,
                                                              status_forcelist=(429, 500, 502, 503, 504))))
        if key := os.environ.get(api_key_env):
            session.headers["Authorization"] = f"Bearer {key}"
        scores = [parse_score(ask(session, endpoint, model, PROMPT.format(**row), timeout_s)) for row in rows]
    return {"score": statistics.fmean(scores) if scores else 0.0, "items": len(scores), "model": model}
