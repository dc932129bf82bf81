import gzip
import json
from pathlib import Path

import pytest

from scratchlm.data.readers import lead_answer, read_member, wikitext_articles
from scratchlm.io import DataFormatError

WIKI = " \n = First = \n \n Body one . \n = = Section = = \n More . \n \n = Second = \n \n Body two . \n"


def test_wikitext_splits_on_top_level_headings_only() -> None:
    articles = list(wikitext_articles(WIKI))
    assert [title for title, _ in articles] == ["First", "Second"]
    assert "= = Section = =" in articles[0][1]


def test_wikitext_reader_gz_ids_split_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "valid.raw.gz"
    path.write_bytes(gzip.compress(WIKI.encode()))
    docs = list(read_member("wikitext", "wt", "val", [path], None))
    assert [d["id"] for d in docs] == ["wt/val/000000", "wt/val/000001"]
    assert json.loads(docs[0]["meta"]) == {"split": "val", "title": "First", "format": "wikitext"}
    assert len(list(read_member("wikitext", "wt", "val", [path], 1))) == 1


def test_truncated_gzip_and_bad_utf8_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "train.raw.gz"
    path.write_bytes(gzip.compress(WIKI.encode() * 50)[:40])
    with pytest.raises(DataFormatError, match="train.raw.gz: corrupt or truncated gzip"):
        list(read_member("wikitext", "wt", "train", [path], None))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good text \xff\xfe more")
    with pytest.raises(DataFormatError, match=r"bad.txt: not UTF-8 at byte 10"):
        list(read_member("text", "t", "train", [bad], None))


def test_sms_csv(tmp_path: Path) -> None:
    path = tmp_path / "sms.csv"
    path.write_text(',spam,text\n0,0,"Hello, are we still on?"\n1,1,WIN a prize now\n')
    assert list(read_member("sms_spam", "sms", "data", [path], None)) == [
        {"id": "sms/00000", "text": "Hello, are we still on?", "label": "ham"},
        {"id": "sms/00001", "text": "WIN a prize now", "label": "spam"},
    ]
    path.write_text(",label,text\n0,0,hi\n")
    with pytest.raises(DataFormatError, match="missing column 'spam'"):
        list(read_member("sms_spam", "sms", "data", [path], None))
    path.write_text(",spam,text\n0,0,hi\n1,7,odd\n")
    with pytest.raises(DataFormatError, match=r"sms.csv:3: label '7'"):
        list(read_member("sms_spam", "sms", "data", [path], None))


def test_chatterbot_pairs(tmp_path: Path) -> None:
    path = tmp_path / "ai.yml"
    path.write_text("categories:\n- AI\nconversations:\n- - What is AI?\n  - A field of study.\n  - Neat.\n")
    records = list(read_member("chatterbot", "cb", "data", [path], None))
    assert [(r["instruction"], r["output"]) for r in records] == [
        ("What is AI?", "A field of study."), ("A field of study.", "Neat.")]
    assert records[0]["category"] == "AI"


def test_instruct_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.jsonl"
    path.write_text('{"instruction": "Say hi", "output": "hi"}\n{"instruction": "No output"}\n')
    with pytest.raises(DataFormatError, match=r"alpaca.jsonl:2: missing or empty field 'output'"):
        list(read_member("instruct_jsonl", "a", "data", [path], None))


def test_olmo_requests_group_by_item(tmp_path: Path) -> None:
    lines = []
    for choice, cont in enumerate([" yes", " no"]):
        lines.append({"doc_id": 0, "label": 1, "doc": {"query": "Q?", "choices": ["yes", "no"], "gold": 1},
                      "request": {"context": "Q?", "continuation": cont}, "idx": choice})
    uncond = {**lines[0], "doc_id": 1_000_000, "request": {"context": "Answer:", "continuation": " yes"}}
    lines.append(uncond)
    path = tmp_path / "requests.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(x) for x in lines).encode()))
    [item] = read_member("olmo_requests", "bench", "piqa", [path], None)
    assert item["id"] == "piqa/000000" and item["gold"] == 1 and item["choices"] == ["yes", "no"]
    assert [r["continuation"] for r in item["requests"]] == [" yes", " no"]


def test_files_of_one_name_in_different_folders_get_different_ids(tmp_path: Path) -> None:
    paths = []
    for folder in ("a", "b/deeper"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "001.txt").write_text(f"the text of {folder}")
        paths.append(tmp_path / folder / "001.txt")
    docs = list(read_member("text", "talks", "train", paths, None))
    assert [d["id"] for d in docs] == ["talks/train/a/001.txt", "talks/train/b/deeper/001.txt"]
    assert [json.loads(d["meta"])["file"] for d in docs] == ["a/001.txt", "b/deeper/001.txt"]
    lone = list(read_member("text", "talks", "test", paths[:1], None))
    assert lone[0]["id"] == "talks/test/001.txt"


def test_position_ids_of_several_files_carry_the_file(tmp_path: Path) -> None:
    """Line 1 of two JSONL files, two instruction files, two CSV files: never one id twice."""
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "part.jsonl").write_text(json.dumps({"text": "words"}) + "\n")
        (tmp_path / folder / "qa.jsonl").write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
        (tmp_path / folder / "sms.csv").write_text(",spam,text\n0,0,hi\n")
    for fmt, name in (("jsonl", "part.jsonl"), ("instruct_jsonl", "qa.jsonl"), ("sms_spam", "sms.csv")):
        records = list(read_member(fmt, "s", "train", [tmp_path / "x" / name, tmp_path / "y" / name], None))
        ids = [r["id"] for r in records]
        assert len(set(ids)) == 2 and f"x/{name}" in ids[0] and f"y/{name}" in ids[1], ids
        assert list(read_member(fmt, "s", "train", [tmp_path / "x" / name], None))[0]["id"] == {
            "jsonl": "s/train/0000001", "instruct_jsonl": "s/000001", "sms_spam": "s/00000"}[fmt]


def test_labelled_sets_in_jsonl_csv_and_parquet_with_named_fields(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = {"text_field": "review", "label_field": "stars", "id_field": "rid"}
    rows = [{"rid": "r1", "review": "Loved it", "stars": 5}, {"review": "Dull", "stars": 1}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "a.csv").write_text("rid,review,stars\nr1,Loved it,5\n,Dull,1\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for name in ("a.jsonl", "a.csv", "a.parquet"):
        records = list(read_member("labelled", "reviews", "data", [tmp_path / name], None, fields=fields))
        assert [r["label"] for r in records] == ["5", "1"], name  # labels are names: any type, any number
        assert records[0] == {"id": "r1", "text": "Loved it", "label": "5"}
        assert records[1]["id"].startswith("reviews/data/"), records[1]


@pytest.mark.parametrize(("name", "content", "error"), [
    ("b.jsonl", '{"review": "ok"}\n', r"b.jsonl:1: missing or empty label field 'stars'"),
    ("b.jsonl", '{"stars": 3}\n', r"b.jsonl:1: missing or empty text field 'review'"),
    ("b.csv", "review,stars\nfine,\n", r"b.csv:2: missing or empty label field 'stars'"),
    ("b.jsonl", '{"review": "ok", "stars": 1}\n[1]\n', r"b.jsonl:2: expected a JSON object, got list"),
    ("b.tsv", "review\tstars\n", r"b.tsv: a labelled set must be .jsonl, .csv or .parquet"),
])
def test_a_bad_labelled_record_names_the_file_and_line(tmp_path: Path, name: str, content: str, error: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataFormatError, match=error):
        list(read_member("labelled", "reviews", "data", [tmp_path / name], None,
                         fields={"text_field": "review", "label_field": "stars", "id_field": "rid"}))


def test_a_byte_order_mark_is_not_part_of_the_first_field_name(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext,label\nfine film,good\n".encode())
    assert list(read_member("labelled", "x", "data", [path], None))[0]["text"] == "fine film"


# ------------------------------------------------------------------------------ sets made into instructions

PARIS = ("Paris (French pronunciation: [paʁi] ( listen)) is the capital and largest city of France. "
         "With an estimated population of 2,102,650 residents (as of January 2023), it is a centre of finance. "
         "It hosts the headquarters of many international organisations, is a major railway hub of Europe and "
         "welcomes millions of visitors every single year.")


def _summaries(tmp_path: Path, entries: dict) -> Path:
    path = tmp_path / "summaries.json"
    path.write_text(json.dumps(entries, ensure_ascii=False))
    return path


def test_wiki_qa_asks_what_the_title_is_and_answers_with_the_lead(tmp_path: Path) -> None:
    path = _summaries(tmp_path, {
        "Paris": {"title": "Paris", "extract": PARIS},
        "Mercury (planet)": {"title": "Mercury (planet)", "extract": "Mercury is the first planet from the Sun.\n"
                             "It is the smallest planet   in the Solar System."},
        "Ant": {"extract": "An ant (Formicidae) is an insect.  It lives in colonies."},  # no title: the key
    })
    records = list(read_member("wiki_qa", "wq", "data", [path], None))
    assert [r["instruction"] for r in records] == ["What is Ant?", "What is Mercury?", "What is Paris?"]  # sorted keys
    assert records[2] == {
        "id": records[2]["id"], "instruction": "What is Paris?", "input": "", "category": "wikipedia",
        # the nested pronunciation and the date go; the third sentence would pass 40 words
        "output": "Paris is the capital and largest city of France. With an estimated population of 2,102,650 "
                  "residents, it is a centre of finance."}
    assert records[1]["output"] == "Mercury is the first planet from the Sun. It is the smallest planet in the Solar System."
    assert records[0]["output"] == "An ant is an insect. It lives in colonies."
    summaries = list(read_member("wiki_summaries", "wq", "data", [path], None))
    assert [r["id"] for r in records] == [d["id"] for d in summaries]  # one id scheme for one entry
    assert list(read_member("wiki_qa", "wq", "data", [path], None)) == records  # deterministic


def test_wiki_qa_cuts_sentences_before_capitals_only(tmp_path: Path) -> None:
    path = _summaries(tmp_path, {"Pi": {"title": "Pi", "extract": "Pi is about 3.14 in value, e.g. for circles. "
                                        "Its digits never end! Is it normal? nobody knows yet."}})
    [record] = read_member("wiki_qa", "wq", "data", [path], None)
    assert record["output"] == "Pi is about 3.14 in value, e.g. for circles. Its digits never end! Is it normal? " \
                               "nobody knows yet."


def test_wiki_qa_skips_stubs_and_overlong_leads(tmp_path: Path) -> None:
    long_first = " ".join(["word"] * 61) + ". Short second sentence here."
    at_limit = " ".join(["word"] * 60) + ". Short second sentence here."
    path = _summaries(tmp_path, {
        "Blank": {"title": "Blank", "extract": "   "},
        "Stub": {"title": "Stub", "extract": "A stub (short). Fine."},  # 3 words: too few even with the second
        "Long": {"title": "Long", "extract": long_first},
        "Limit": {"title": "Limit", "extract": at_limit},
        "Bracket": {"title": "Bracket", "extract": "A stray ( bracket stays in this answer."},
        "All (disambiguation)": {"title": "(disambiguation)", "extract": "Several things are called this."},
    })
    records = {r["instruction"]: r["output"] for r in read_member("wiki_qa", "wq", "data", [path], None)}
    assert records == {
        "What is (disambiguation)?": "Several things are called this.",  # nothing but brackets: kept whole
        "What is Bracket?": "A stray ( bracket stays in this answer.",
        "What is Limit?": " ".join(["word"] * 60) + ".",  # a long first sentence alone, nothing added
    }


def test_wiki_qa_answers_grow_to_forty_words_and_no_further() -> None:
    twenty = "Alpha " + " ".join(["beta"] * 18) + " gamma."
    assert lead_answer(f"{twenty} {twenty} Extra.") == f"{twenty} {twenty}"  # 40 words: in; the 41st: out
    assert lead_answer(f"{twenty} Extra words. {twenty}") == f"{twenty} Extra words."  # stops at the first miss
    assert lead_answer("One two three four.") == "One two three four."
    assert lead_answer("One (two) three four.") is None


@pytest.mark.parametrize(("content", "error"), [
    ('{"A": {"extract": "x"},', r"summaries.json:1: not valid JSON"),
    ('{"A": {"title": "A"}}', r"summaries.json: entry 'A' has no text field 'extract'"),
    ('["A"]', r"summaries.json: expected an object of title -> entry"),
])
def test_wiki_qa_rejects_what_wiki_summaries_rejects(tmp_path: Path, content: str, error: str) -> None:
    path = tmp_path / "summaries.json"
    path.write_text(content)
    for fmt in ("wiki_qa", "wiki_summaries"):
        with pytest.raises(DataFormatError, match=error):
            list(read_member(fmt, "wq", "data", [path], None))


def test_sms_instruct_asks_spam_or_not_with_the_classifier_ids(tmp_path: Path) -> None:
    path = tmp_path / "sms.csv"
    path.write_text(',spam,text\n0,0,"Hello, are we still on?"\n1,1,WIN a prize now\n')
    records = list(read_member("sms_instruct", "sms", "data", [path], None))
    question = "Is the following text message spam or not spam?"
    assert records == [
        {"id": "sms/00000", "instruction": question, "input": "Hello, are we still on?", "output": "not spam",
         "category": "classification"},
        {"id": "sms/00001", "instruction": question, "input": "WIN a prize now", "output": "spam",
         "category": "classification"},
    ]
    assert [r["id"] for r in records] == [r["id"] for r in read_member("sms_spam", "sms", "data", [path], None)]
    path.write_text(",spam,text\n0,0,hi\n1,7,odd\n")
    with pytest.raises(DataFormatError, match=r"sms.csv:3: label '7' is not 0 or 1"):
        list(read_member("sms_instruct", "sms", "data", [path], None))


# ------------------------------------------------------------------------------ preference pairs


def test_preference_jsonl_records(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
            {"id": "p-2", "prompt": "Translate", "input": "chat", "chosen": "cat", "rejected": "dog", "extra": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert list(read_member("preference_jsonl", "prefs", "data", [path], None)) == [
        {"id": "prefs/000001", "prompt": "Name a colour.", "input": "", "chosen": "Blue.", "rejected": "Seven."},
        {"id": "p-2", "prompt": "Translate", "input": "chat", "chosen": "cat", "rejected": "dog"},
    ]


@pytest.mark.parametrize(("second", "error"), [
    ({"chosen": "a", "rejected": "b"}, r"pairs.jsonl:2: missing or empty field 'prompt'"),
    ({"prompt": "q", "chosen": "  ", "rejected": "b"}, r"pairs.jsonl:2: missing or empty field 'chosen'"),
    ({"prompt": "q", "chosen": "a", "rejected": None}, r"pairs.jsonl:2: missing or empty field 'rejected'"),
    ({"prompt": "q", "chosen": "a", "rejected": 3}, r"pairs.jsonl:2: missing or empty field 'rejected'"),
    ({"prompt": "q", "input": ["x"], "chosen": "a", "rejected": "b"}, r"pairs.jsonl:2: field 'input' is not a string"),
    ({"prompt": "q", "chosen": "Same answer.", "rejected": " Same answer.\n"},
     r"pairs.jsonl:2: chosen and rejected are the same answer$"),
])
def test_a_bad_preference_pair_names_the_file_line_and_field(tmp_path: Path, second: dict, error: str) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps(second) + "\n")
    with pytest.raises(DataFormatError, match=error) as raised:
        list(read_member("preference_jsonl", "prefs", "data", [path], None))
    assert "\n" not in str(raised.value)
