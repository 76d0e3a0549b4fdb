"""Answer text shared by evaluation and drafting: SQuAD's normalization, word-overlap F1, a language guess."""

from __future__ import annotations

import unicodedata
from collections import Counter

ARTICLES = frozenset({"a", "an", "the"})


def normalize_answer(text: str) -> str:
    """NFC, casefold, drop every Unicode punctuation mark (P*), drop English articles, collapse whitespace."""
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text or "").casefold())
    # Deleted, not replaced by a space (as SQuAD does), so "1,000" and "1000" agree.
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(token for token in text.split() if token not in ARTICLES)


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD bag-of-tokens F1; two empty texts agree (1), one empty text scores 0."""
    predicted, expected = answer_tokens(prediction), answer_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


_VIETNAMESE_LETTERS = set("ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")


def text_language(text: str) -> str | None:
    """A rough guess from the letters used: "vi" (Vietnamese letters), "latin" (other Latin text), None (too
    short or another script). Enough to notice references and answers written in different languages."""
    letters = [ch for ch in (text or "").lower() if ch.isalpha()]
    if len(letters) < 8:
        return None
    if sum(ch in _VIETNAMESE_LETTERS for ch in letters) / len(letters) > 0.03:
        return "vi"
    if sum("a" <= ch <= "z" for ch in letters) / len(letters) > 0.9:
        return "latin"
    return None
