"""Analysis + commerce benchmark (issue 6) against the loopback API servers of tests/analysis: time per
candidate for the rules and gemini analyzers, and Coupang API calls per video with a cold and a warm
(1 h) search cache. Not a test; prints figures. Meant to be folded into benchmarks/video_bench.py.

    .venv/bin/python benchmarks/analysis_bench.py [--videos N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=20)
    args = ap.parse_args()
    ev = VideoEvidence.from_part1(VIDEO, channel=CHANNEL)
    out: dict[str, object] = {}
    answer = {
        "product_name": "라운드랩 자작나무 선크림",
        "brand": "라운드랩",
        "category_path": ["뷰티"],
        "confidence": 0.9,
    }
    gemini = GeminiServer(
        GEMINI_KEY, ranges=[{"start": 4, "end": 14}, {"start": 40, "end": 45}], candidate=answer
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        CoupangServer(ACCESS_KEY, SECRET_KEY, CATALOG) as cs,
        gemini as gs,
    ):
        store = open_store(Path(tmp) / "bench.db")
        cfg = CoupangConfig(
            access_key=SecretStr(ACCESS_KEY),
            secret_key=SecretStr(SECRET_KEY),
            base_url=cs.url,
            search_per_hour=100000,
            deeplink_per_minute=100000,
            monthly_budget=0,
        )
        client = CoupangClient(cfg, store=store)
        for label in ("cold", "warm"):
            before = len(cs.requests)
            r = analyze_video(ev.model_copy(update={"video_id": f"bench-{label}"}), analyzer=RulesAnalyzer(),
                              commerce=client, store=store)  # fmt: skip
            calls = cs.requests[before:]
            out[f"coupang_calls_per_video_{label}"] = {
                "search": sum("search" in c.path for c in calls),
                "deeplink": sum("deeplink" in c.path for c in calls),
                "candidates": len(r.candidates),
            }
        t0, n = time.perf_counter(), 0
        for i in range(args.videos):
            n += len(analyze_video(ev.model_copy(update={"video_id": f"r{i}"}), analyzer=RulesAnalyzer(),
                                   commerce=client, store=store).candidates)  # fmt: skip
        out["rules_plus_commerce_ms_per_candidate_warm"] = round((time.perf_counter() - t0) * 1000 / n, 2)
        t0, n = time.perf_counter(), 0
        for i in range(args.videos):
            n += len(
                analyze_video(
                    ev.model_copy(update={"video_id": f"r{i}-nostore"}), analyzer=RulesAnalyzer()
                ).candidates
            )
        out["rules_only_ms_per_candidate"] = round((time.perf_counter() - t0) * 1000 / n, 2)
        g = GeminiAnalyzer(GeminiConfig(api_key=SecretStr(GEMINI_KEY), base_url=gs.url))
        t0, n = time.perf_counter(), 0
        for i in range(args.videos):
            n += len(analyze_video(ev.model_copy(update={"video_id": f"g{i}"}), analyzer=g).candidates)
        out["gemini_ms_per_candidate_loopback"] = round((time.perf_counter() - t0) * 1000 / n, 2)
        out["gemini_calls_per_video"] = len(gs.requests) / args.videos
        store.close()
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
