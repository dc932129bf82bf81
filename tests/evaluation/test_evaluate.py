"""Which held-out texts the evaluate stage scores: from params, or from the data's own sources and splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchlm.config.evaluation import EvaluateParams
from scratchlm.evaluation.evaluate import scored_sets
from scratchlm.io import DataFormatError, make_document, write_documents


@pytest.fixture
def dedup(tmp_path: Path) -> Path:
    """val: two documents of `talks`, one of `news`; no test split (a corpus with a train member only)."""
    docs = [make_document(f"{source}/{i}", f"text {source} {i}", source, {"split": "train"})
            for source, i in (("talks", 2), ("news", 1), ("talks", 1))]
    (tmp_path / "val").mkdir()
    write_documents(tmp_path / "val" / "part-00000.parquet", docs)
    return tmp_path


def test_null_scores_each_source_of_each_split_that_exists(dedup: Path) -> None:
    sets = scored_sets(dedup, EvaluateParams())
    assert sets == {"news_val": ["text news 1"], "talks_val": ["text talks 1", "text talks 2"]}
    assert scored_sets(dedup, EvaluateParams(lm_max_documents=1))["talks_val"] == ["text talks 1"]


def test_named_sources_are_scored_together(dedup: Path) -> None:
    sets = scored_sets(dedup, EvaluateParams(lm_sources=["talks", "news"], lm_max_documents=2))
    assert sets == {"talks+news_val": ["text news 1", "text talks 1"]}


def test_a_named_split_or_source_the_data_lacks_is_one_line(dedup: Path) -> None:
    with pytest.raises(DataFormatError, match=r"test: no documents of held-out documents \(evaluate.lm_splits"):
        scored_sets(dedup, EvaluateParams(lm_splits=["val", "test"]))
    with pytest.raises(DataFormatError, match=r"val: no documents of sources \['wikitext2'\]"):
        scored_sets(dedup, EvaluateParams(lm_sources=["wikitext2"], lm_splits=["val"]))
    with pytest.raises(DataFormatError, match="no held-out documents in val or test"):
        scored_sets(dedup, EvaluateParams(lm_sources=["wikitext2"]))
