"""PPL (paid product placement) probability from an editable pattern file:
``0.60 * explicit + 0.25 * implicit + 0.15 * context``, each component 1 when any of its patterns
matches the text (title, transcript, on-screen text), else 0.

Text is normalised before matching: Korean patterns match with spaces and punctuation ignored (OCR's
"유 료 광 고" and "유료·광고" are "유료광고"); Latin patterns match whole words ("#ad" never matches
"made"); a disclosure denied right after it ("협찬 아니고", "광고 아닙니다") does not count. The
``[caption]`` table lists on-screen captions that are a disclosure on their own ("광고", "AD"): they
count as explicit when a whole caption reads so.

Per candidate (``candidate_ppl``): the video-wide disclosures (title, disclosure captions anywhere,
a spoken "이 영상은 … 유료광고") apply to every candidate of the video; everything else counts only
when it is in the candidate's own speech and on-screen text.

Reads the pattern file only (the packaged ``ppl_patterns.toml`` or a user's copy); never guesses.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from stageflow.errors import ConfigError

WEIGHTS = {"explicit": 0.60, "implicit": 0.25, "context": 0.15}


@dataclass(frozen=True)
class PplPatterns:
    explicit: tuple[str, ...]
    implicit: tuple[str, ...]
    context: tuple[str, ...]
    caption: tuple[str, ...] = ("광고", "협찬", "유료광고", "ad", "pr", "sponsored", "#ad", "#광고")

    @classmethod
    def load(cls, path: str | Path | None = None) -> PplPatterns:
        """The packaged patterns, or the TOML file at ``path`` (same three tables)."""
        if path is None:
            raw = resources.files("stageflow.video.analysis").joinpath("ppl_patterns.toml").read_text("utf-8")
            where = "packaged ppl_patterns.toml"
        else:
            p = Path(path).expanduser()
            if not p.is_file():
                raise ConfigError(f"PPL pattern file {p} not found: fix the ppl_patterns path")
            raw, where = p.read_text("utf-8"), str(p)
        try:
            data = tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"PPL pattern file {where} is not valid TOML: {exc}") from None
        out = {}
        for kind in WEIGHTS:
            pats = data.get(kind, {}).get("patterns", [])
            if not isinstance(pats, list) or not all(isinstance(x, str) for x in pats):
                raise ConfigError(f"PPL pattern file {where}: [{kind}] patterns must be a list of strings")
            for pat in pats:
                if pat.startswith("re:"):
                    try:
                        re.compile(pat[3:])
                    except re.error as exc:
                        raise ConfigError(f"PPL pattern file {where}: bad regex {pat!r}: {exc}") from None
            out[kind] = tuple(pats)
        if "caption" in data:
            caps = data["caption"].get("patterns", [])
            if not isinstance(caps, list) or not all(isinstance(x, str) for x in caps):
                raise ConfigError(f"PPL pattern file {where}: [caption] patterns must be a list of strings")
            out["caption"] = tuple(caps)
        return cls(**out)


_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_DENIAL = ("아니", "아님", "아닙", "아녜", "없", "x")


def compact(text: str) -> str:
    """NFKC, lower case, everything but letters, digits and '#' removed (spaces too)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if ch.isalnum() or ch == "#")


def _words(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " " + " ".join(re.findall(r"[#0-9a-z\uac00-\ud7a3]+", text)) + " "


def _denied(compact_text: str, end: int) -> bool:
    return compact_text[end : end + 3].startswith(_DENIAL)


def _matches(patterns: Sequence[str], text: str) -> list[str]:
    squeezed, words = compact(text), _words(text)
    hits = []
    for pat in patterns:
        if pat.startswith("re:"):
            if re.search(pat[3:], text, re.IGNORECASE) or re.search(pat[3:], squeezed, re.IGNORECASE):
                hits.append(pat)
            continue
        if _HANGUL.search(pat):
            needle = compact(pat)
            found = [m.end() for m in re.finditer(re.escape(needle), squeezed)] if needle else []
            if any(not _denied(squeezed, end) for end in found):
                hits.append(pat)
        else:
            needle = " ".join(re.findall(r"[#0-9a-z\uac00-\ud7a3]+", pat.lower()))
            if needle and f" {needle} " in words:
                hits.append(pat)
    return hits


def caption_disclosures(captions: Sequence[str], patterns: PplPatterns) -> list[str]:
    """Captions that are a disclosure on their own ("광고", "AD", "#ad"), as whole texts."""
    wanted = {compact(p) for p in patterns.caption}
    return [c for c in captions if compact(c) in wanted]


def ppl_probability(texts: Sequence[str], patterns: PplPatterns) -> tuple[float, dict[str, list[str]]]:
    """(probability in 0..1, the matched patterns per component)."""
    text = "\n".join(texts)
    found = {kind: _matches(getattr(patterns, kind), text) for kind in WEIGHTS}
    found["explicit"] += [f"caption:{c}" for c in caption_disclosures(texts, patterns)]
    prob = sum(WEIGHTS[k] * (1.0 if found[k] else 0.0) for k in WEIGHTS)
    return round(prob, 4), found


_VIDEO_WIDE = ("이영상은", "본영상은", "이콘텐츠는", "thisvideo", "thisvideoissponsored", "todaysvideo")


def video_disclosures(
    title: str, speech: Sequence[str], ocr: Sequence[str], patterns: PplPatterns
) -> dict[str, list[str]]:
    """The patterns that apply to the whole video, per component: everything in the title; explicit
    disclosures in any on-screen text (YouTube's paid-promotion label, a "유료광고 포함" overlay, a
    bare "광고" caption); spoken ones that say so for the video ("이 영상은 … 협찬")."""
    found: dict[str, list[str]] = {
        k: [f"title:{p}" for p in _matches(getattr(patterns, k), title)] for k in WEIGHTS
    }
    for text in ocr:
        found["explicit"] += [f"ocr:{p}" for p in _matches(patterns.explicit, text)]
    found["explicit"] += [f"caption:{c}" for c in caption_disclosures(ocr, patterns)]
    for text in speech:
        if any(w in compact(text) for w in _VIDEO_WIDE):
            for kind in ("explicit", "implicit"):
                found[kind] += [f"speech:{p}" for p in _matches(getattr(patterns, kind), text)]
    return {k: list(dict.fromkeys(v)) for k, v in found.items()}


def candidate_ppl(
    *,
    video_wide: dict[str, list[str]],
    speech: Sequence[str],
    ocr: Sequence[str],
    patterns: PplPatterns,
) -> tuple[float, dict[str, list[str]]]:
    """PPL of one candidate: ``video_wide`` (from ``video_disclosures``) plus the patterns found in
    the candidate's own speech and on-screen text."""
    _, found = ppl_probability([*speech, *ocr], patterns)
    for kind, pats in video_wide.items():
        found[kind] = list(dict.fromkeys([*pats, *found.get(kind, [])]))
    prob = sum(WEIGHTS[k] * (1.0 if found[k] else 0.0) for k in WEIGHTS)
    return round(prob, 4), found
