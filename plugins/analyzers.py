"""Built-in analyzers: ``rules`` (offline cue lexicon + OCR matching, the default) and ``gemini``
(Gemini generateContent over httpx). The engines live in stageflow.video.analysis; this module only
registers them and imports nothing heavy."""

from __future__ import annotations

from stageflow.api import Analyzer, Register, hookimpl
from stageflow.video.analysis.gemini import GeminiConfig
from stageflow.video.analysis.rules import RulesConfig


def _rules(config: RulesConfig) -> Analyzer:
    from stageflow.video.analysis.rules import RulesAnalyzer

    return RulesAnalyzer(config)


def _gemini(config: GeminiConfig) -> Analyzer:
    from stageflow.video.analysis.gemini import GeminiAnalyzer

    return GeminiAnalyzer(config)


@hookimpl
def register_analyzers(register: Register) -> None:
    register(
        "rules",
        _rules,
        config=RulesConfig,
        requires=("kiwipiepy", "rapidfuzz", "jamo"),
        description="Offline rules: cue lexicon, open-vocabulary naming from speech + captions",
    )
    register(
        "gemini",
        _gemini,
        config=GeminiConfig,
        requires=("httpx",),
        description="Gemini generateContent, JSON-schema output, kept frames as images (GEMINI_API_KEY)",
    )
