"""Text similarity used by the analyzers and commerce matching: normalisation, OCR-to-transcript
matching (exact 1.0, substring 0.9, else token Jaccard; >= 0.6 is product-related) and the
commerce title similarity (0.4 sequence ratio + 0.4 token overlap + 0.2 brand bonus).

Pure functions over strings; no I/O, no models.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from difflib import SequenceMatcher

RELATED_THRESHOLD = 0.6
_TOKEN = re.compile(r"[0-9a-z\uac00-\ud7a3\u3131-\u318e]+")


def normalize(text: str) -> str:
    """NFKC, lower case, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_TOKEN.findall(text))


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


def text_match(ocr_text: str, spoken: str) -> float:
    """How well on-screen text matches what was said: 1.0 when the normalised OCR text equals a run
    of spoken tokens, 0.9 when one contains the other (spaces ignored, so Korean particles such as
    "선크림을" still match "선크림"), else the best token Jaccard over spoken windows of the OCR
    text's length."""
    o_tokens, s_tokens = tokens(ocr_text), tokens(spoken)
    if not o_tokens or not s_tokens:
        return 0.0
    n = len(o_tokens)
    windows = [s_tokens[i : i + n] for i in range(max(1, len(s_tokens) - n + 1))]
    if any(w == o_tokens for w in windows):
        return 1.0
    o_compact, s_compact = "".join(o_tokens), "".join(s_tokens)
    if len(o_compact) >= 2 and (o_compact in s_compact or s_compact in o_compact):
        return 0.9
    return max(jaccard(o_tokens, w) for w in windows)


def title_similarity(query: str, title: str, brand: str | None = None) -> float:
    """Commerce similarity of a product ``title`` to the candidate ``query``: 0.4 sequence ratio
    (difflib, on normalised strings) + 0.4 token overlap (share of query tokens found in the title)
    + 0.2 when the brand appears in the title. In 0..1."""
    q, t = normalize(query), normalize(title)
    if not q or not t:
        return 0.0
    ratio = SequenceMatcher(None, q, t).ratio()
    q_tokens, t_tokens = set(q.split()), set(t.split())
    t_compact = t.replace(" ", "")
    overlap = sum(1 for tok in q_tokens if tok in t_tokens or tok in t_compact) / len(q_tokens)
    bonus = 1.0 if brand and normalize(brand) and normalize(brand).replace(" ", "") in t_compact else 0.0
    return round(0.4 * ratio + 0.4 * overlap + 0.2 * bonus, 4)
