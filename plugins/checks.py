"""Built-in monitor probes: ``http`` (health URL), ``disk`` (free space), ``store`` (SQLite integrity),
``role`` (a deploy target's role marker), ``drift`` (a deploy target's files still match its
manifest), ``gpu`` (nvidia-smi) and ``work_pool`` (Prefect API).

Probes only read: they never change what they look at. Each returns a CheckResult with a short
detail a person can act on; exceptions are turned into failures by the monitor engine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stageflow.api import CheckResult, Register, hookimpl
from stageflow.monitor.drift import DriftCheckConfig


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpCheckConfig(_Cfg):
    url: str
    timeout_s: float = Field(default=5.0, gt=0)
    expect_status: list[int] = Field(default_factory=lambda: list(range(200, 400)))
    contains: str | None = None


class HttpCheck:
    def __init__(self, config: HttpCheckConfig):
        self.c = config

    def probe(self) -> CheckResult:
        import httpx

        try:
            r = httpx.get(self.c.url, timeout=self.c.timeout_s, follow_redirects=False)
        except httpx.TimeoutException:
            return CheckResult(self.c.url, False, f"{self.c.url} timed out after {self.c.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return CheckResult(self.c.url, False, f"{self.c.url} unreachable: {type(exc).__name__}")
        if r.status_code not in self.c.expect_status:
            return CheckResult(self.c.url, False, f"{self.c.url} answered HTTP {r.status_code}")
        if self.c.contains is not None and self.c.contains not in r.text:
            return CheckResult(self.c.url, False, f"{self.c.url} body lacks {self.c.contains!r}")
        return CheckResult(self.c.url, True, f"HTTP {r.status_code} in {r.elapsed.total_seconds():.2f} s")


class DiskCheckConfig(_Cfg):
    path: str = "/"
    min_free_gb: float = Field(default=2.0, ge=0)


class DiskCheck:
    def __init__(self, config: DiskCheckConfig):
        self.c = config

    def probe(self) -> CheckResult:
        usage = shutil.disk_usage(self.c.path)
        free_gb = usage.free / 1024**3
        ok = free_gb >= self.c.min_free_gb
        return CheckResult(self.c.path, ok, f"{free_gb:.1f} GiB free (minimum {self.c.min_free_gb:g})")


class StoreCheckConfig(_Cfg):
    path: str | None = None


class StoreCheck:
    def __init__(self, config: StoreCheckConfig):
        self.c = config

    def probe(self) -> CheckResult:
        import sqlite3

        from stageflow import settings

        path = Path(self.c.path).expanduser() if self.c.path else settings.store_path()
        if not path.is_file():
            return CheckResult(str(path), False, f"store {path} does not exist")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
        return CheckResult(str(path), verdict == "ok", f"quick_check: {verdict}")


class RoleCheckConfig(_Cfg):
    target: str  # a local deploy target directory
    role: str
    marker: str = ".stageflow/role"


class RoleCheck:
    """The 17-hour incident guard: the target must still declare the role it is deployed as."""

    def __init__(self, config: RoleCheckConfig):
        self.c = config

    def probe(self) -> CheckResult:
        marker = Path(self.c.target).expanduser() / self.c.marker
        try:
            found = marker.read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, IndexError):
            return CheckResult(
                self.c.target, False, f"{marker} missing or empty: expected role {self.c.role!r}"
            )
        if found != self.c.role:
            return CheckResult(
                self.c.target, False, f"{self.c.target} declares role {found!r}, expected {self.c.role!r}"
            )
        return CheckResult(self.c.target, True, f"role {found}")


class DriftCheck:
    """A deploy target whose files no longer match what its last sync recorded (hand edits)."""

    def __init__(self, config: Any):
        self.c = config

    def probe(self) -> CheckResult:
        from stageflow.monitor.drift import probe_drift

        return probe_drift(self.c)


class Pm2CheckConfig(_Cfg):
    role: str
    allowed_apps: list[str] = Field(min_length=1, description="the apps this role may run")
    required_apps: list[str] = Field(default_factory=list, description="apps that must be online")
    pm2: str = "pm2"
    ssh: str | None = None  # e.g. "ssh deploy@api1": run `pm2 jlist` on the target
    timeout_s: float = Field(default=10.0, gt=0)


class Pm2Check:
    """The running PM2 process list: an app of another role (the 17-hour incident: the web server's
    config running on the API server) or a required app that is not online is a failure."""

    def __init__(self, config: Pm2CheckConfig):
        self.c = config

    def probe(self) -> CheckResult:
        import json
        import shlex

        cmd = [*(shlex.split(self.c.ssh) if self.c.ssh else []), self.c.pm2, "jlist"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.c.timeout_s)
        except FileNotFoundError:
            return CheckResult("pm2", False, f"{cmd[0]} not found: install pm2 or set options.pm2")
        except subprocess.TimeoutExpired:
            return CheckResult("pm2", False, f"`{' '.join(cmd)}` timed out after {self.c.timeout_s:g} s")
        if proc.returncode != 0:
            return CheckResult("pm2", False, f"`{' '.join(cmd)}` exited {proc.returncode}")
        try:
            apps = {
                a["name"]: a.get("pm2_env", {}).get("status", "?") for a in json.loads(proc.stdout or "[]")
            }
        except (ValueError, KeyError, TypeError):
            return CheckResult("pm2", False, "pm2 jlist did not print a JSON process list")
        foreign = sorted(set(apps) - set(self.c.allowed_apps))
        if foreign:
            return CheckResult(
                "pm2", False, f"pm2 runs {', '.join(foreign)}, not an app of role {self.c.role!r}"
            )
        down = [a for a in self.c.required_apps if apps.get(a) != "online"]
        if down:
            return CheckResult(
                "pm2", False, "not online: " + ", ".join(f"{a} ({apps.get(a, 'absent')})" for a in down)
            )
        return CheckResult("pm2", True, f"{len(apps)} app(s) of role {self.c.role!r} running")


class GpuCheckConfig(_Cfg):
    min_gpus: int = Field(default=1, ge=0)


class GpuCheck:
    def __init__(self, config: GpuCheckConfig):
        self.c = config

    def probe(self) -> CheckResult:
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return CheckResult(
                "gpu", self.c.min_gpus == 0, "nvidia-smi not found: no NVIDIA driver on this host"
            )
        proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
        gpus = [line for line in proc.stdout.splitlines() if line.startswith("GPU ")]
        ok = proc.returncode == 0 and len(gpus) >= self.c.min_gpus
        return CheckResult("gpu", ok, f"{len(gpus)} GPU(s) visible (minimum {self.c.min_gpus})")


class WorkPoolCheckConfig(_Cfg):
    pool: str
    min_online_workers: int = Field(default=1, ge=0)


class WorkPoolCheck:
    """A work pool exists, is not paused, and has enough workers whose heartbeat is recent."""

    def __init__(self, config: WorkPoolCheckConfig):
        self.c = config

    def probe(self) -> CheckResult:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                pool = client.read_work_pool(self.c.pool)
            except ObjectNotFound:
                return CheckResult(self.c.pool, False, f"work pool {self.c.pool!r} does not exist")
            if pool.is_paused:
                return CheckResult(self.c.pool, False, f"work pool {self.c.pool!r} is paused")
            # limit/offset explicit: prefect 3.8.8's client sends nulls that its server rejects (422).
            workers = client.read_workers_for_work_pool(self.c.pool, offset=0, limit=200)
        online = [w for w in workers if str(getattr(w.status, "value", w.status)).upper() == "ONLINE"]
        ok = len(online) >= self.c.min_online_workers
        return CheckResult(
            self.c.pool, ok, f"{len(online)} online worker(s) (minimum {self.c.min_online_workers})"
        )


@hookimpl
def register_checks(register: Register) -> None:
    register("http", HttpCheck, config=HttpCheckConfig, description="Health URL answers in time")
    register("disk", DiskCheck, config=DiskCheckConfig, description="Free disk space above a minimum")
    register("store", StoreCheck, config=StoreCheckConfig, description="stageflow store passes quick_check")
    register(
        "role", RoleCheck, config=RoleCheckConfig, description="Deploy target declares the expected role"
    )
    register(
        "drift", DriftCheck, config=DriftCheckConfig, description="Deploy target's files match its manifest"
    )
    register("pm2", Pm2Check, config=Pm2CheckConfig, description="PM2 runs only this role's apps, all online")
    register("gpu", GpuCheck, config=GpuCheckConfig, description="NVIDIA GPUs visible (nvidia-smi)")
    register(
        "work_pool", WorkPoolCheck, config=WorkPoolCheckConfig, description="Prefect work pool has workers"
    )
