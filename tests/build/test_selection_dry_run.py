"""``--dry-run`` writes nothing anywhere: neither the repository (``.git`` included) nor
``$STAGEFLOW_HOME`` changes, on a fresh repository and after a real build."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import Monorepo


def _snapshot(*roots: Path) -> dict[str, tuple[int, int, bytes | None]]:
    out: dict[str, tuple[int, int, bytes | None]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                p = Path(dirpath) / name
                st = p.lstat()
                data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
                out[str(p)] = (st.st_mode, st.st_mtime_ns, data)
    return out


@pytest.mark.parametrize("after_build", [False, True])
def test_dry_run_writes_nothing(small: Monorepo, cli, tmp_path: Path, monkeypatch, after_build: bool):
    home = tmp_path / "sf-home"
    home.mkdir()
    monkeypatch.setenv("STAGEFLOW_HOME", str(home))
    if after_build:
        code, _, err = cli("build", str(small.root), "--logs", "none")
        assert code == 0, err
        small.edit("@s/ui")
    before = _snapshot(small.root, home)
    for args in (
        [],
        ["--json"],
        ["--filter", "...@s/types", "--json"],
        ["--filter", "[HEAD]", "--json"],
        ["--base", "HEAD", "--json"],
    ):
        code, out, err = cli("build", str(small.root), "--dry-run", *args)
        assert code == 0, err
        if "--json" in args:
            assert json.loads(out)["dry_run"] is True
        assert _snapshot(small.root, home) == before, f"--dry-run {args} wrote something"
    assert not (small.root / ".stageflow").exists() or after_build
