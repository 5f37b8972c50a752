"""Operations benchmark (not a test).

1. Deployment latency: a `monitor` flow run created through a real local Prefect server and executed
   by a process worker, against the same flow called in-process against that server (baseline, same
   run). Prints medians and the ratio.
2. Monitor detection time: `stageflow monitor --interval 60` (the deployment's cadence) watches a
   local health endpoint; faults are injected at random moments; prints the median and worst time
   from fault to alert against the 60 s target.

    .venv/bin/python benchmarks/ops_bench.py [--runs 3] [--faults 3]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server at {url} not healthy in {seconds} s")


def deployment_latency(runs: int, tmp: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp / "prefect"),
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        STAGEFLOW_HOME=str(tmp / "home"),
        STAGEFLOW_CONFIG=str(tmp / "stageflow.toml"),
    )
    (tmp / "stageflow.toml").write_text(
        '[[monitor.checks]]\nname = "disk"\nuse = "disk"\noptions = { min_free_gb = 0 }\n'
    )
    (tmp / "prefect.yaml").write_text((ROOT / "prefect.yaml").read_text())
    server = subprocess.Popen(
        [BIN / "prefect", "server", "start"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    worker = None
    try:
        wait_healthy(f"{env['PREFECT_API_URL']}/health")
        subprocess.run(
            [BIN / "stageflow", "pools", "create"], env=env, cwd=tmp, check=True, capture_output=True
        )
        subprocess.run(
            [BIN / "prefect", "--no-prompt", "deploy", "--name", "monitor"],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        worker = subprocess.Popen(
            [BIN / "prefect", "worker", "start", "--pool", "cpu", "--install-policy", "never"],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        api = env["PREFECT_API_URL"]
        dep = httpx.get(f"{api}/deployments/name/monitor/monitor").json()
        deployed = []
        for _ in range(runs):
            start = time.perf_counter()
            run = httpx.post(f"{api}/deployments/{dep['id']}/create_flow_run", json={}).json()
            while httpx.get(f"{api}/flow_runs/{run['id']}").json()["state"]["type"] != "COMPLETED":
                time.sleep(0.2)
            deployed.append(time.perf_counter() - start)
        code = (
            "import time; from stageflow.flows.monitor import monitor; s = time.perf_counter(); "
            "monitor(); print(time.perf_counter() - s)"
        )
        inproc = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code], env=env, cwd=tmp, capture_output=True, text=True, check=True
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            for _ in range(runs)
        ]
        d, i = statistics.median(deployed), statistics.median(inproc)
        print(f"deployment run via server+worker: median {d:.2f} s over {runs} runs")
        print(f"same flow in-process (baseline):  median {i:.2f} s")
        print(f"ratio deployed / in-process:      {d / i:.1f}x")
    finally:
        for proc in (worker, server):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)


def detection_time(faults: int, tmp: Path) -> None:
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *a):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}/health"
    cfg = tmp / "monitor.toml"
    cfg.write_text(
        f'[monitor]\nrecover_after = 1\n[[monitor.checks]]\nname = "web"\nuse = "http"\n'
        f'options = {{ url = "{url}", timeout_s = 5 }}\n'
    )
    env = {**os.environ, "STAGEFLOW_HOME": str(tmp / "mon-home")}
    proc = subprocess.Popen(
        [BIN / "stageflow", "monitor", "--config", str(cfg), "--interval", "60"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    times = []
    try:
        time.sleep(3)
        for _ in range(faults):
            time.sleep(random.uniform(0, 60))
            state["status"] = 503
            injected = time.monotonic()
            while "-> alert: web" not in proc.stderr.readline():
                pass
            times.append(time.monotonic() - injected)
            state["status"] = 200
            while "-> recovery: web" not in proc.stderr.readline():
                pass
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        http.shutdown()
    print(
        f"monitor detection (interval 60 s): median {statistics.median(times):.1f} s, "
        f"worst {max(times):.1f} s over {faults} faults; target <= 60 s: "
        f"{'ok' if max(times) <= 60 else 'OVER'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--skip-detection", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        deployment_latency(args.runs, Path(tmp))
        if not args.skip_detection:
            detection_time(args.faults, Path(tmp))


if __name__ == "__main__":
    main()
