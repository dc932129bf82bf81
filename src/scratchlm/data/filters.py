"""Text normalisation and Gopher-style quality filters, datatrove-shaped.

A filter is a small function `(doc, params) -> (keep, reason)`; `reason` is empty when the document
is kept and names the filter otherwise, so per-reason drop counts fall out for free. Thresholds
live in the `clean` params section (defaults follow Gopher / datatrove).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from scratchlm.config.data import CleanParams

# C0/C1 control characters except tab and newline, plus zero-width oddities that break tokenisers.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\ufeff]")
SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")
BLANK_LINES = re.compile(r"\n{3,}")
WORD = re.compile(r"\w+")
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})  # Gopher's list

# WikiText's tokenisation artefacts, undone so the text reads as ordinary English.
WIKITEXT_SUBS = [
    (re.compile(r" @(.)@ "), r"\1"),  # " @-@ ", " @,@ ", " @.@ "
    (re.compile(r"^ ?(=(?: =)*) (.*?) \1 ?$", re.M), r"\2"),  # headings = Title = / = = Section = =
    (re.compile(r" ([.,;:!?%)\]}])"), r"\1"),
    (re.compile(r"([(\[{$£€]) "), r"\1"),
    (re.compile(r" (['’](?:s|re|ve|d|ll|m|t)\b)"), r"\1"),
    (re.compile(r" (n't)\b"), r"\1"),
    (re.compile(r'" ([^"\n]*?) "'), r'"\1"'),
]


def normalize_text(text: str) -> str:
    """NFC, no control characters, one space between words, no trailing spaces, ≤ 1 blank line."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = CONTROL.sub("", text)
    lines = (SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def undo_wikitext(text: str) -> str:
    """Reverse WikiText's ` @-@ ` style escapes, spaced punctuation and `= Heading =` markup."""
    for pattern, replacement in WIKITEXT_SUBS:
        text = pattern.sub(replacement, text)
    return text


def words_of(text: str) -> list[str]:
    """Lower-cased word tokens: the unit of dedup shingles, exact-dup keys and decontamination n-grams."""
    return WORD.findall(text.lower())


@dataclass
class Doc:
    """A document's text with the views filters share, each computed once on first use."""

    text: str

    @cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @cached_property
    def lines(self) -> list[str]:
        return [line for line in self.text.split("\n") if line.strip()]


Result = tuple[bool, str]
Filter = Callable[[Doc, CleanParams], Result]


def word_count_filter(doc: Doc, p: CleanParams) -> Result:
    n = len(doc.words)
    if n < p.min_words:
        return False, "too_few_words"
    if n > p.max_words:
        return False, "too_many_words"
    return True, ""


def mean_word_length_filter(doc: Doc, p: CleanParams) -> Result:
    mean = sum(map(len, doc.words)) / max(1, len(doc.words))
    return (p.min_mean_word_length <= mean <= p.max_mean_word_length), "mean_word_length"


def symbol_ratio_filter(doc: Doc, p: CleanParams) -> Result:
    """Hash signs and ellipses per word: high in lists of tags and truncated boilerplate."""
    symbols = doc.text.count("#") + doc.text.count("...") + doc.text.count("…")
    return symbols / max(1, len(doc.words)) <= p.max_symbol_word_ratio, "symbol_word_ratio"


def ellipsis_lines_filter(doc: Doc, p: CleanParams) -> Result:
    ending = sum(line.rstrip().endswith(("...", "…")) for line in doc.lines)
    return ending / max(1, len(doc.lines)) <= p.max_ellipsis_line_ratio, "ellipsis_lines"


def alpha_words_filter(doc: Doc, p: CleanParams) -> Result:
    """Share of words with a letter in them: low for tables, numbers and code."""
    alpha = sum(any(c.isalpha() for c in word) for word in doc.words)
    return alpha / max(1, len(doc.words)) >= p.min_alpha_word_ratio, "alpha_word_ratio"


def stop_words_filter(doc: Doc, p: CleanParams) -> Result:
    """Real English prose uses a few function words; keyword lists and menus do not."""
    found = sum(word.lower().strip(".,;:!?\"'()") in STOP_WORDS for word in doc.words)
    return found >= p.min_stop_words, "stop_words"


def duplicate_lines_filter(doc: Doc, p: CleanParams) -> Result:
    """Fraction of lines that repeat an earlier line (Gopher's `dup_line_frac`)."""
    if not doc.lines:
        return True, ""
    repeated = len(doc.lines) - len(set(doc.lines))
    return repeated / len(doc.lines) <= p.max_duplicate_line_ratio, "duplicate_lines"


def top_ngram_filter(doc: Doc, p: CleanParams) -> Result:
    """Share of characters covered by the most frequent word n-gram, for each configured n."""
    words = [w.lower() for w in doc.words]
    total_chars = max(1, sum(map(len, words)))
    for n, limit in sorted(p.max_top_ngram_ratio.items()):
        if len(words) < n:
            continue
        grams = Counter(zip(*(words[i:] for i in range(n)), strict=False))
        gram, count = grams.most_common(1)[0]
        if count > 1 and sum(map(len, gram)) * count / total_chars > limit:
            return False, f"top_{n}gram_ratio"
    return True, ""


FILTERS: list[Filter] = [
    word_count_filter,
    mean_word_length_filter,
    symbol_ratio_filter,
    ellipsis_lines_filter,
    alpha_words_filter,
    stop_words_filter,
    duplicate_lines_filter,
    top_ngram_filter,
]


def apply_filters(text: str, params: CleanParams, filters: list[Filter] = FILTERS) -> Result:
    """Run the filters in order and stop at the first that drops the document."""
    doc = Doc(text)
    for check in filters:
        keep, reason = check(doc, params)
        if not keep:
            return False, reason
    return True, ""
