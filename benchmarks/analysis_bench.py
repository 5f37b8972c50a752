"""Analysis + commerce benchmark (issue 6) against the loopback API servers of tests/analysis: time per
candidate for the rules and gemini analyzers with the real store and the real Coupang client, cold
(empty search cache) and warm (1 h cache filled), and the API calls per video in both cases. Not a
test; prints figures. ``measure()`` is what benchmarks/video_bench.py reports too.

    .venv/bin/python benchmarks/analysis_bench.py [--videos N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from analysis.conftest import ACCESS_KEY, CATALOG, CHANNEL, GEMINI_KEY, SECRET_KEY, VIDEO  # noqa: E402
from analysis.servers import CoupangServer, GeminiServer  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from stageflow.commerce.coupang import CoupangClient, CoupangConfig  # noqa: E402
from stageflow.store import open_store  # noqa: E402
from stageflow.video.analysis.engine import analyze_video  # noqa: E402
from stageflow.video.analysis.evidence import VideoEvidence  # noqa: E402
from stageflow.video.analysis.gemini import GeminiAnalyzer, GeminiConfig  # noqa: E402
from stageflow.video.analysis.rules import RulesAnalyzer  # noqa: E402

GEMINI_ANSWER = {
    "product_name": "라운드랩 자작나무 선크림",
    "brand": "라운드랩",
    "category_path": ["뷰티"],
    "confidence": 0.9,
}


def _coupang(url: str, store: Any) -> CoupangClient:
    cfg = CoupangConfig(
        access_key=SecretStr(ACCESS_KEY),
        secret_key=SecretStr(SECRET_KEY),
        base_url=url,
        search_per_hour=1_000_000,
        deeplink_per_minute=1_000_000,
        monthly_budget=0,
    )
    return CoupangClient(cfg, store=store)


def _calls(requests: list[Any]) -> dict[str, int]:
    return {
        "search": sum("search" in r.path for r in requests),
        "deeplink": sum("deeplink" in r.path for r in requests),
    }


def measure(videos: int = 20) -> dict[str, Any]:
    """Figures for ``videos`` analyses of the sample video (5 transcript segments, 4 on-screen texts,
    3 candidates: 2 matched on Coupang). Times in ms per candidate; calls per video."""
    ev = VideoEvidence.from_part1(VIDEO, channel=CHANNEL)
    out: dict[str, Any] = {"videos": videos}
    gemini = GeminiServer(GEMINI_KEY, ranges=[{"start": 4, "end": 14}, {"start": 40, "end": 45}],
                          candidate=GEMINI_ANSWER)  # fmt: skip
    with (
        tempfile.TemporaryDirectory() as tmp,
        CoupangServer(ACCESS_KEY, SECRET_KEY, CATALOG) as cs,
        gemini as gs,
    ):
        # Per video, one timed analysis each way; medians, so a busy moment on a shared machine does
        # not skew the figures. Stores are opened before the clock starts.
        def timed(store: Any, vid: str, client: Any = None) -> tuple[float, int]:
            t0 = time.perf_counter()
            r = analyze_video(ev.model_copy(update={"video_id": vid}), analyzer=RulesAnalyzer(),
                              commerce=client, store=store)  # fmt: skip
            return time.perf_counter() - t0, len(r.candidates)

        # cold: a fresh store (empty search cache) per video, against a fresh store without commerce
        cold, fresh, n = [], [], 0
        before = len(cs.requests)
        for i in range(videos):
            with_c, without = open_store(Path(tmp) / f"cold-{i}.db"), open_store(Path(tmp) / f"plain-{i}.db")
            client = _coupang(cs.url, with_c)
            secs, n = timed(with_c, f"cold-{i}", client)
            cold.append(secs)
            fresh.append(timed(without, f"cold-{i}")[0])
            client.close()
            with_c.close()
            without.close()
        out["candidates_per_video"] = n
        out["coupang_calls_per_video_cold"] = {k: v / videos for k, v in _calls(cs.requests[before:]).items()}

        # warm: one store whose cache a first analysis of the same video filled
        store = open_store(Path(tmp) / "warm.db")
        client = _coupang(cs.url, store)
        timed(store, "fill", client)
        before = len(cs.requests)
        warm = [timed(store, f"warm-{i}", client)[0] for i in range(videos)]
        out["coupang_calls_per_video_warm"] = {k: v / videos for k, v in _calls(cs.requests[before:]).items()}
        plain = [timed(store, f"plain-{i}")[0] for i in range(videos)]
        client.close()
        store.close()

        def ms(values: list[float]) -> float:
            return round(statistics.median(values) * 1000 / n, 2)

        out["rules_store_ms_per_candidate"] = ms(plain)
        out["rules_store_commerce_ms_per_candidate_cold"] = ms(cold)
        out["rules_store_commerce_ms_per_candidate_warm"] = ms(warm)
        out["commerce_ms_per_candidate_cold"] = round(ms(cold) - ms(fresh), 2)
        out["commerce_ms_per_candidate_warm"] = round(ms(warm) - ms(plain), 2)

        t0, n = time.perf_counter(), 0
        for i in range(videos):
            n += len(
                analyze_video(
                    ev.model_copy(update={"video_id": f"r{i}"}), analyzer=RulesAnalyzer()
                ).candidates
            )
        out["rules_only_ms_per_candidate"] = round((time.perf_counter() - t0) * 1000 / n, 2)

        g = GeminiAnalyzer(GeminiConfig(api_key=SecretStr(GEMINI_KEY), base_url=gs.url))
        before, t0, n = len(gs.requests), time.perf_counter(), 0
        for i in range(videos):
            n += len(analyze_video(ev.model_copy(update={"video_id": f"g{i}"}), analyzer=g).candidates)
        out["gemini_ms_per_candidate_loopback"] = round((time.perf_counter() - t0) * 1000 / n, 2)
        # Gemini answers are not cached: cold and warm make the same calls (1 for ranges + 1 per range)
        out["gemini_calls_per_video"] = (len(gs.requests) - before) / videos
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    out["cpus"] = os.cpu_count()
    return out


def report(fig: dict[str, Any]) -> None:
    """Human-readable lines for ``measure``'s figures."""
    cold, warm = fig["coupang_calls_per_video_cold"], fig["coupang_calls_per_video_warm"]
    print(f"analysis ({fig['videos']} videos x {fig['candidates_per_video']:g} candidates, loopback APIs):")
    print(f"  rules analyzer only:                 {fig['rules_only_ms_per_candidate']:.2f} ms/candidate")
    print(f"  rules + store (status machine):      {fig['rules_store_ms_per_candidate']:.2f} ms/candidate")
    print(f"  rules + store + Coupang, cold cache: {fig['rules_store_commerce_ms_per_candidate_cold']:.2f}"
          f" ms/candidate (commerce {fig['commerce_ms_per_candidate_cold']:.2f})")  # fmt: skip
    print(f"  rules + store + Coupang, warm cache: {fig['rules_store_commerce_ms_per_candidate_warm']:.2f}"
          f" ms/candidate (commerce {fig['commerce_ms_per_candidate_warm']:.2f})")  # fmt: skip
    print(
        f"  gemini analyzer (loopback):          {fig['gemini_ms_per_candidate_loopback']:.2f} ms/candidate"
    )
    print(f"  Coupang calls per video, cold cache: {cold['search']:g} search + {cold['deeplink']:g} deeplink")
    print(f"  Coupang calls per video, warm cache: {warm['search']:g} search + {warm['deeplink']:g} deeplink")
    print(f"  Gemini calls per video (no cache):   {fig['gemini_calls_per_video']:g}")
    la = fig["loadavg"]
    print(f"  load average while measured:         {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {fig['cpus']} CPUs")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=20)
    args = ap.parse_args()
    fig = measure(args.videos)
    report(fig)
    print(json.dumps(fig, ensure_ascii=False))


if __name__ == "__main__":
    main()
