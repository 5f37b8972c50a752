"""PPL (paid product placement) probability from an editable pattern file:
``0.60 * explicit + 0.25 * implicit + 0.15 * context``, each component 1 when any of its patterns
matches the text (title, transcript, on-screen text), else 0.

Reads the pattern file only (the packaged ``ppl_patterns.toml`` or a user's copy); never guesses.
"""

from __future__ import annotations

import re
import tomllib
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
        return cls(**out)


def _matches(patterns: Sequence[str], text: str) -> list[str]:
    low = text.lower()
    hits = []
    for pat in patterns:
        if pat.startswith("re:"):
            if re.search(pat[3:], text, re.IGNORECASE):
                hits.append(pat)
        elif pat.lower() in low:
            hits.append(pat)
    return hits


def ppl_probability(texts: Sequence[str], patterns: PplPatterns) -> tuple[float, dict[str, list[str]]]:
    """(probability in 0..1, the matched patterns per component)."""
    text = "\n".join(texts)
    found = {kind: _matches(getattr(patterns, kind), text) for kind in WEIGHTS}
    prob = sum(WEIGHTS[k] * (1.0 if found[k] else 0.0) for k in WEIGHTS)
    return round(prob, 4), found
