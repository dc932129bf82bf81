import json
from pathlib import Path

from scratchlm.data.decontaminate import ContaminationIndex, evaluation_texts, ngram_hashes
from scratchlm.io import write_jsonl

QUESTION = "which of these animals lives the longest in the wild according to the survey of naturalists"


def test_ngrams_need_n_words() -> None:
    assert ngram_hashes("one two three", 4) == set()
    assert len(ngram_hashes("one two three four five", 4)) == 2


def test_index_matches_shared_long_ngrams_only(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    write_jsonl(tmp_path / "bench" / "arc_easy.jsonl", [
        {"id": "arc_easy/1", "task": "arc_easy", "query": QUESTION, "choices": ["a"], "gold": 0,
         "requests": [{"context": "Question: ", "continuation": "tortoise"}]}])
    (tmp_path / "sms").mkdir()
    write_jsonl(tmp_path / "sms" / "data.jsonl", [{"id": "s1", "text": "short message", "label": "ham"}])
    for name, role in (("bench", "benchmark"), ("sms", "classification")):
        (tmp_path / name / "source.json").write_text(json.dumps({"name": name, "role": role}))
    items = list(evaluation_texts([tmp_path]))
    assert ("arc_easy", QUESTION) in items and ("sms", "short message") in items
    index = ContaminationIndex.build(items, n=13)
    assert index.matches(f"Some article text. {QUESTION.upper()}! And more.") == ["arc_easy"]
    assert index.matches("which of these animals lives the longest in the wild according to") == []


def test_an_ngram_shared_by_two_benchmarks_credits_both() -> None:
    index = ContaminationIndex.build([("piqa", QUESTION), ("sciq", QUESTION + " extra words"), ("arc", "unrelated")], 13)
    assert index.matches(QUESTION) == ["piqa", "sciq"]
