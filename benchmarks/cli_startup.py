"""CLI start-up: how long `stageflow` commands that have nothing to do take, as medians and as
ratios against baselines measured in the same run (bare interpreter start, `import prefect`).

Target (issue 2): `stageflow --help` and a no-op command answer in <= 0.5 s.

    .venv/bin/python benchmarks/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEED = Path(__file__).resolve().parents[1] / "samples" / "youtube_channel_feed.xml"


def median_seconds(cmd: list[str], runs: int, env: dict[str, str], cwd: str) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    stageflow = str(Path(py).with_name("stageflow"))
    with tempfile.TemporaryDirectory() as tmp:
        # Measured as a user's install runs: with bytecode caches. A sandbox that exports
        # PYTHONDONTWRITEBYTECODE would recompile every uncached module on each start (~70 ms here).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["STAGEFLOW_HOME"] = tmp
        cfg = Path(tmp) / "stageflow.toml"
        cfg.write_text(f'[discover]\noptions = {{ feeds = ["{FEED}"], max_age_days = 100000 }}\n')
        subprocess.run([stageflow, "discover"], env=env, cwd=tmp, check=True, capture_output=True)
        cases = {
            "python -c pass (baseline)": [py, "-c", "pass"],
            "python -c 'import prefect' (baseline)": [py, "-c", "import prefect"],
            "stageflow --help": [stageflow, "--help"],
            "stageflow plugins": [stageflow, "plugins"],
            "stageflow db migrate (up to date)": [stageflow, "db", "migrate"],
            "stageflow discover (nothing new)": [stageflow, "discover"],
        }
        for cmd in cases.values():  # warm-up: writes the bytecode caches, fills the page cache
            subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, check=True)
        results = {name: median_seconds(cmd, args.runs, env, tmp) for name, cmd in cases.items()}
    base = results["python -c pass (baseline)"]
    prefect = results["python -c 'import prefect' (baseline)"]
    print(f"{'command':<40} {'median s':>9} {'x python':>9} {'x import prefect':>17}  target<=0.5s")
    for name, seconds in results.items():
        verdict = "" if "baseline" in name else ("ok" if seconds <= 0.5 else "OVER")
        print(f"{name:<40} {seconds:>9.3f} {seconds / base:>9.1f} {seconds / prefect:>17.2f}  {verdict}")


if __name__ == "__main__":
    main()
