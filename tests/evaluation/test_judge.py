"""The optional LLM judge against a real HTTP server on the loopback interface."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scratchlm.evaluation.judge import JudgeError, judge_answers, parse_score

ROWS = [{"instruction": "Say hi", "reference": "Hi!", "generated": "Hi!"},
        {"instruction": "Name a colour", "reference": "Blue.", "generated": "Red."}]


def serve(reply: str) -> Iterator[tuple[str, list[dict]]]:
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            prompt = body["messages"][0]["content"]
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
