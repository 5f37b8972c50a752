"""Faults in the middle of a transfer: rsync killed with -9 while it writes leaves its own
``.<name>.XXXXXX`` temp file; the next sync removes it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STAGEFLOW = str(Path(sys.executable).with_name("stageflow"))


def _wait(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync not installed")
def test_rsync_temp_file_left_by_kill_9_is_cleaned(cli, project) -> None:
    project.write("media/big.bin", "")
    (project.source / "media" / "big.bin").write_bytes(os.urandom(3_000_000))
    slow = 'transport = "rsync"\ntransport_options = { extra_args = ["--bwlimit=200"] }'
    project.env(exclude='["node_modules/", "*.log"]')
    config = project.source / "stageflow.toml"
    config.write_text(config.read_text() + slow + "\n")
    code, _, err = cli("target", "init", project.target, "--role", "apiserver")
    assert code == 0, err
    proc = subprocess.Popen(
        [STAGEFLOW, "sync", str(project.source), "--env", "api"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches rsync too
        env={**os.environ, "STAGEFLOW_SYNC_SERVER": "0"},
    )

    def temps() -> list[Path]:
        media = project.target / "media"
        return [p for p in media.glob(".big.bin.*")] if media.is_dir() else []

    try:
        _wait(lambda: temps() and temps()[0].stat().st_size > 0, "rsync's temp file")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert temps(), "the kill left no temp file: nothing to test"
    config.write_text(config.read_text().replace('extra_args = ["--bwlimit=200"]', "extra_args = []"))
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert temps() == []
    assert (project.target / "media" / "big.bin").read_bytes() == (
        project.source / "media" / "big.bin"
    ).read_bytes()
