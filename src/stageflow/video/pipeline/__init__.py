"""The video pipeline, one owner for the video family (issue 13):

- :mod:`.records` — the typed records, one model per kind from input to sink;
- :mod:`.inputs` — input discovery (files, folders, feeds, channels files, URLs -> ``VideoRef``);
- :mod:`.steps` — fetch, lookup, decode, transcribe, look (detect + OCR), infer, store;
- :mod:`.candidates` — analyse (+ clip), sinks, the summary message;
- :mod:`.run` — the one sequence; ``stageflow analyze`` runs it in-process, the flows through tasks.

Feed discovery for ``stageflow discover`` is :mod:`stageflow.video.discovery`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: The public names, each from its module (loaded on first use: ``job`` imports ``records``, and
#: ``steps`` imports ``job``, so nothing is imported eagerly here).
_EXPORTS = {
    "records": (
        "VideoRef", "Fetched", "KeptFrame", "DecodedJob", "Inference", "VideoRecord", "StoredResult",
    ),
    "inputs": ("resolve_inputs", "file_id", "sha256_file", "spoken_language", "is_page_url", "is_url"),
    "steps": (
        "RESULTS_TABLE", "TIMED_STAGES", "build_backends", "config_key", "sampling_of",
        "pick_downloader", "read_download_meta", "acquire", "fetch", "lookup", "stored_result", "decode",
        "transcribe", "look", "infer", "store_result",
    ),
    "candidates": (
        "Analysis", "Analysed", "Outcome", "CANDIDATE_FIELDS", "check_analysis", "check_backends",
        "build_analysis",
        "evidence_boxes", "make_clipper", "analyse", "sink_rows", "write_sink", "run_summary", "notify",
    ),
    "run": ("AnalyzeContext", "analyze", "analyze_records", "analyze_video", "finish_run", "run_analysis"),
}  # fmt: skip
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
