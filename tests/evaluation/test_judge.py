"""The optional LLM judge against a real HTTP server on the loopback interface."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scratchlm.evaluation.judge import JudgeError, judge_answers, judge_pairwise, parse_choice, parse_score

ROWS = [{"instruction": "Say hi", "reference": "Hi!", "generated": "Hi!"},
        {"instruction": "Name a colour", "reference": "Blue.", "generated": "Red."}]


def serve(reply: str | Callable[[str], str]) -> Iterator[tuple[str, list[dict]]]:
    """A chat endpoint answering `reply`, or `reply(prompt)` when it is a function of the prompt."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            prompt = body["messages"][0]["content"]
            if callable(reply):
                content = reply(prompt)
            else:
                content = reply if reply != "echo" else ("90" if "`Hi!` on a scale" in prompt else "30")
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", seen
    finally:
        server.shutdown()


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[dict]]]:
    yield from serve("echo")


@pytest.fixture
def chatty_server() -> Iterator[tuple[str, list[dict]]]:
    yield from serve("I would rather not say.")


def test_judge_scores_each_answer_through_the_endpoint(echo_server, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, seen = echo_server
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    result = judge_answers(ROWS, endpoint, "judge-model", "JUDGE_KEY", timeout_s=5)
    assert result == {"score": 60.0, "items": 2, "model": "judge-model"}
    assert [s["path"] for s in seen] == ["/v1/chat/completions"] * 2
    assert seen[0]["auth"] == "Bearer sk-test" and seen[0]["model"] == "judge-model" and seen[0]["temperature"] == 0
    assert "`Blue.`" in seen[1]["messages"][0]["content"] and "`Red.`" in seen[1]["messages"][0]["content"]


def test_a_reply_that_is_not_a_score_is_an_error(chatty_server) -> None:
    endpoint, _ = chatty_server
    with pytest.raises(JudgeError, match="not a score from 0 to 100"):
        judge_answers(ROWS, endpoint, "m", "NO_SUCH_VARIABLE", timeout_s=5)


def test_unreachable_endpoint_fails_fast_naming_it() -> None:
    with pytest.raises(JudgeError, match=r"judge http://127\.0\.0\.1:9/v1"):
        judge_answers(ROWS[:1], "http://127.0.0.1:9/v1", "m", "NO_SUCH_VARIABLE", timeout_s=2)


def test_no_endpoint_is_skipped_with_a_note() -> None:
    assert "skipped" in judge_answers(ROWS, None, "m", "X")
    assert parse_score("Score: 85") == 85.0


MARK = "[aligned]"
PAIRS = [{"instruction": "Say hi", "input": "", "reference": "Hi!", "a": f"Hello there {MARK}", "b": "Go away."},
         {"instruction": "Name a colour", "input": "Pick a warm one.", "reference": "Red.",
          "a": f"Orange {MARK}", "b": "Blue."}]


def responses(prompt: str) -> tuple[str, str]:
    """The texts the judge prompt shows as Response 1 and Response 2."""
    first, second = prompt.split("Response 1: ", 1)[1].split("\n\nResponse 2: ", 1)
    return first, second.split("\n\nWhich response is better?", 1)[0]


def marker_first_or_tie(prompt: str) -> str:
    return "Response 1" if MARK in responses(prompt)[0] else "Tie."


@pytest.fixture
def pair_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[dict]]]:
    yield from serve(request.param)


@pytest.mark.parametrize(("pair_server", "expected"), [
    (lambda prompt: "1" if MARK in responses(prompt)[0] else "2",   # always prefers the aligned answer
     {"win_rate": 1.0, "wins": 4, "losses": 0, "ties": 0, "consistent": 1.0}),
    ("1", {"win_rate": 0.5, "wins": 2, "losses": 2, "ties": 0, "consistent": 0.0}),  # position bias cancels
    ("**TIE**", {"win_rate": 0.5, "wins": 0, "losses": 0, "ties": 4, "consistent": 1.0}),
    (marker_first_or_tie, {"win_rate": 0.75, "wins": 2, "losses": 0, "ties": 2, "consistent": 0.0}),
], indirect=["pair_server"], ids=["prefers-aligned", "always-first", "always-tie", "first-or-tie"])
def test_pairwise_asks_both_orders_and_maps_them_back(pair_server, expected: dict) -> None:
    endpoint, _ = pair_server
    result = judge_pairwise(PAIRS, endpoint, "judge-model", "NO_SUCH_VARIABLE", timeout_s=5)
    assert result == {**expected, "judgements": 4, "items": 2, "model": "judge-model"}


@pytest.mark.parametrize("pair_server", ["2"], indirect=True)
def test_pairwise_prompts_show_both_answers_in_both_orders(pair_server, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, seen = pair_server
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    judge_pairwise(PAIRS, endpoint, "judge-model", "JUDGE_KEY", timeout_s=5)
    prompts = [s["messages"][0]["content"] for s in seen]
    assert [responses(p) for p in prompts] == [(row[x], row[y]) for row in PAIRS for x, y in (("a", "b"), ("b", "a"))]
    assert all("Correct output: Hi!" in p and "Say hi" in p and "Input:" not in p for p in prompts[:2])
    assert all("Correct output: Red." in p and "Input: Pick a warm one." in p for p in prompts[2:])
    assert all('"1", "2" or "tie"' in p for p in prompts)
    assert {(s["path"], s["auth"], s["model"], s["temperature"]) for s in seen} == {
        ("/v1/chat/completions", "Bearer sk-test", "judge-model", 0)}


@pytest.mark.parametrize("pair_server", ["Response 1 is clearly better."], indirect=True)
def test_pairwise_reply_is_read_from_its_first_choice_word(pair_server) -> None:
    endpoint, _ = pair_server
    assert judge_pairwise(PAIRS[:1], endpoint, "m", "NO_SUCH_VARIABLE", timeout_s=5)["consistent"] == 0.0


def test_pairwise_reply_without_a_choice_is_an_error(chatty_server) -> None:
    endpoint, _ = chatty_server
    with pytest.raises(JudgeError, match="'I would rather not say.', not 1, 2 or tie"):
        judge_pairwise(PAIRS, endpoint, "m", "NO_SUCH_VARIABLE", timeout_s=5)


def test_pairwise_without_endpoint_is_skipped_with_a_note() -> None:
    assert judge_pairwise(PAIRS, None, "m", "X") == {"skipped": "no judge endpoint set (evaluate.judge.endpoint)"}
    assert judge_pairwise(PAIRS, "", "m", "X") == judge_answers(ROWS, None, "m", "X")


@pytest.mark.parametrize(("text", "choice"), [("1", "1"), ("2.", "2"), ("Tie", "tie"), ("**TIE**", "tie"),
                                              ("Response 2", "2"), ("(1) because it matches", "1"),
                                              ("  tie\n", "tie")])
def test_parse_choice_takes_the_first_choice_word(text: str, choice: str) -> None:
    assert parse_choice(text) == choice


@pytest.mark.parametrize("text", ["", "Both are fine", "1.5", "10", "tied", "Response1"])
def test_parse_choice_rejects_replies_without_a_choice(text: str) -> None:
    with pytest.raises(JudgeError, match="not 1, 2 or tie"):
        parse_choice(text)


def test_evaluate_judges_both_models_and_the_aligned_one_pairwise() -> None:
    """The evaluate stage's judge step (`judge_scores`) against the stub: each model's mean score, and the aligned
    model's win rate over the instruction model's answers to the same prompts, in both orders."""
    from scratchlm.config.evaluation import EvaluateParams
    from scratchlm.evaluation.evaluate import judge_scores

    def prefer_the_reference(prompt: str) -> str:
        if "on a scale" in prompt:
            return "80" if "`Hi!` on a scale" in prompt else "20"
        first = prompt.split("Response 1:")[1].split("Response 2:")[0]
        return "1" if "Hi!" in first else "2"

    old = [{"instruction": "Say hi", "input": "", "reference": "Hi!", "generated": "Bye."}]
    new = [{**old[0], "generated": "Hi!"}]
    for endpoint, seen in serve(prefer_the_reference):
        params = EvaluateParams(judge={"endpoint": endpoint, "model": "stub", "items": 1})
        instruct, aligned = {}, {}
        judge_scores(instruct, aligned, old, new, params)
        assert instruct["judge"]["score"] == 20.0 and aligned["judge"]["score"] == 80.0
        assert aligned["judge_pairwise"]["win_rate"] == 1.0 and aligned["judge_pairwise"]["judgements"] == 2
        assert len(seen) == 4
