"""Concurrent JSONL writers (separate processes, as two flows or CLI runs are): every record
survives and every line is whole JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WRITER = """
import sys
from stageflow.plugin_manager import get_plugin_manager
sink = get_plugin_manager().build("sinks", "jsonl", {"directory": sys.argv[1]})
who = sys.argv[2]
for i in range(int(sys.argv[3])):
    sink.write("items", [{"id": f"{who}-{i}", "n": i}])
"""


def test_two_processes_writing_the_same_table_lose_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sink"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(out), who, "200"], stderr=subprocess.PIPE)
        for who in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    lines = (out / "items.jsonl").read_text(encoding="utf-8").splitlines()
    ids = {json.loads(line)["id"] for line in lines}  # every line parses
    assert len(lines) == 400 and ids == {f"{w}-{i}" for w in "ab" for i in range(200)}
    assert sorted(p.name for p in out.iterdir()) == ["items.jsonl", "items.jsonl.lock"]  # no temp left
