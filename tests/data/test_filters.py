import pytest

from scratchlm.config.data import CleanParams
from scratchlm.data.filters import (
    Doc,
    alpha_words_filter,
    apply_filters,
    duplicate_lines_filter,
    ellipsis_lines_filter,
    mean_word_length_filter,
    normalize_text,
    stop_words_filter,
    symbol_ratio_filter,
    top_ngram_filter,
    undo_wikitext,
    word_count_filter,
)

P = CleanParams()
PROSE = (
    "The history of the city goes back to the Roman period, when a small fort was built on the river. "
    "Over the following centuries it grew into a market town with a church, a bridge and a busy harbour. "
    "Today it is known for its university and for the old houses that line the streets of the centre."
)


def test_good_prose_passes_every_filter() -> None:
    assert apply_filters(PROSE, P) == (True, "")


@pytest.mark.parametrize(
    ("check", "bad_text"),
    [
        (word_count_filter, "Too short to be a document."),
        (mean_word_length_filter, " ".join(["a b c d e f g h i j"] * 5)),
        (mean_word_length_filter, " ".join(["incomprehensibilities"] * 30)),
        (symbol_ratio_filter, PROSE + " #tag #tag #tag #tag #tag #tag #tag #tag #tag #tag #tag #tag"),
        (ellipsis_lines_filter, "\n".join(["Read more about the story of the town..."] * 3 + [PROSE])),
        (alpha_words_filter, PROSE + " " + " ".join(str(n) for n in range(40))),
        (stop_words_filter, "Buy cheap watches online now best prices guaranteed fast shipping worldwide " * 3),
        (duplicate_lines_filter, "\n".join(["Click here to subscribe to our newsletter today."] * 4 + [PROSE])),
        (top_ngram_filter, "the big red dog " * 30),
    ],
)
def test_each_filter_drops_what_it_targets_and_keeps_prose(check, bad_text: str) -> None:
    assert check(Doc(PROSE), P)[0], f"{check.__name__} must keep ordinary prose"
    keep, reason = check(Doc(bad_text), P)
    assert not keep
    assert reason


def test_apply_filters_reports_the_first_failing_reason() -> None:
    assert apply_filters("Far too short.", P) == (False, "too_few_words")
    assert apply_filters(" ".join(["word"] * 200_000), P) == (False, "too_many_words")


def test_thresholds_come_from_params() -> None:
    text = "The cat and the dog sat with a hat."
    assert not word_count_filter(Doc(text), P)[0]
    assert word_count_filter(Doc(text), CleanParams(min_words=5))[0]


def test_normalize_text() -> None:
    raw = "Cafe\u0301  has\ttabs\u00a0and\x00 nul\r\nline two   \n\n\n\nthird\u200b"
    assert normalize_text(raw) == "Café has tabs and nul\nline two\n\nthird"


def test_undo_wikitext_reads_as_english() -> None:
    raw = (" = Valkyria Chronicles III = \n \n It is a role @-@ playing game , sold 1 @,@ 000 copies at "
           "3 @.@ 5 dollars ( in Japan ) . The game 's theme was \" Calamity \" . \n = = Gameplay = = \n")
    text = normalize_text(undo_wikitext(raw))
    assert text == ("Valkyria Chronicles III\n\nIt is a role-playing game, sold 1,000 copies at 3.5 dollars "
                    "(in Japan). The game's theme was \"Calamity\".\nGameplay")
