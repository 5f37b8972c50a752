"""Crafted and tampered build-cache entries: a hostile cache server (a real HTTP server on
127.0.0.1) or a writable shared cache directory must never get a file written outside the declared
outputs, and a tampered entry is a miss with a warning, never a hit."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from stageflow.build import outputs
from stageflow.build.model import CacheEntryCorrupt
from stageflow.plugin_manager import get_plugin_manager

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="the build fixtures need node")


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if data else None)


def _entry(members: list[tuple[str, bytes, dict[str, object]]], key: str = "") -> bytes:
    """A tar laid out as stageflow writes one (log first, metadata last) around crafted members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, outputs.LOG_MEMBER, b"built\n")
        for name, data, attrs in members:
            _add(tar, name, data, **attrs)
        _add(tar, outputs.META_MEMBER, json.dumps({"key": key}).encode())
    return buf.getvalue()


def _cve_2025_4517(outside: Path, prefix: str = "dist") -> list[tuple[str, bytes, dict[str, object]]]:
    """The realpath-overflow bypass of tarfile's "data" filter (CVE-2025-4517): nested symlinks
    longer than PATH_MAX hide where the last link points, and a file is written through it."""
    comp, steps, members = "d" * 247, "abcdefghijklmnop", []
    path = prefix
    for step in steps:
        members.append((f"{path}/{comp}", b"", {"type": tarfile.DIRTYPE, "mode": 0o755}))
        members.append((f"{path}/{step}", b"", {"type": tarfile.SYMTYPE, "linkname": comp}))
        path = f"{path}/{comp}"
    link = f"{prefix}/{'/'.join(steps)}/{'l' * 254}"
    members.append((link, b"", {"type": tarfile.SYMTYPE, "linkname": "../" * len(steps)}))
    # 17 ".." stay inside the archive on paper (below the 17 link names) but climb to / for real.
    escape_to = os.path.relpath(link, prefix) + "/.." * 17 + str(outside)
    members.append((f"{prefix}/escape", b"", {"type": tarfile.SYMTYPE, "linkname": escape_to}))
    members.append((f"{prefix}/escape/pwned.txt", b"pwned\n", {"mode": 0o644}))
    return members


def _http_repo(small, cache_server) -> None:
    (small.root / "stageflow.toml").write_text(
        f'[build]\ncache = "http"\ncache_options = {{url = "{cache_server.url}"}}\n'
    )
    small.commit()


def _fresh_machine(small) -> None:
    shutil.rmtree(small.root / ".stageflow", ignore_errors=True)
    for name in small.dirs:
        shutil.rmtree(small.path(name) / "dist", ignore_errors=True)


def test_cve_2025_4517_archive_from_http_cache_writes_nothing_outside(
    small, cli_json, cache_server, tmp_path: Path
):
    _http_repo(small, cache_server)
    assert cli_json(str(small.root))[0] == 0 and len(cache_server.entries) == 5
    outside = tmp_path / "outside"
    outside.mkdir()
    for key in cache_server.entries:
        cache_server.entries[key] = _entry(_cve_2025_4517(outside), key)
    _fresh_machine(small)
    small.built()
    code, doc, _ = cli_json(str(small.root))
    assert not (outside / "pwned.txt").exists(), "a cache entry wrote outside the workspace"
    assert list(outside.iterdir()) == []
    assert code == 0 and doc["cached"] == [] and len(small.built()) == 5  # every entry a miss: rebuilt
    warnings = json.dumps(doc)
    assert "corrupt cache entry treated as a miss" in warnings


@pytest.mark.parametrize(
    "member",
    [
        ("../../escape.txt", b"x", {}),
        ("/tmp/abs-escape.txt", b"x", {}),
        ("dist/hard", b"", {"type": tarfile.LNKTYPE, "linkname": "package.json"}),
        ("dist/dev", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}),
        ("dist/fifo", b"", {"type": tarfile.FIFOTYPE}),
        ("dist/up", b"", {"type": tarfile.SYMTYPE, "linkname": "../package.json"}),
        ("dist/abs", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
        ("src/index.txt", b"overwritten source", {}),  # a tracked source file
        ("node_modules/.bin/tsc", b"#!/bin/sh\necho planted\n", {"mode": 0o755}),
    ],
    ids=["dotdot", "absolute", "hardlink", "device", "fifo", "link-up", "link-abs", "source", "bin"],
)
def test_member_outside_declared_outputs_is_refused(tmp_path: Path, member):
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "index.txt").write_text("mine")
    (ws / "package.json").write_text("{}")
    (ws / "dist").mkdir()
    (ws / "dist" / "old.js").write_text("old")
    archive = tmp_path / "entry.tar"
    archive.write_bytes(_entry([("dist", b"", {"type": tarfile.DIRTYPE, "mode": 0o755}), member]))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(CacheEntryCorrupt):
        outputs.unpack(archive, ws, ["dist/"])
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written, nothing removed
    assert (ws / "src" / "index.txt").read_text() == "mine"
    assert (ws / "dist" / "old.js").read_text() == "old"


def test_in_tree_relative_symlinks_are_restored(tmp_path: Path):
    ws = tmp_path / "ws"
    (ws / "dist" / "assets").mkdir(parents=True)
    (ws / "dist" / "assets" / "app.js").write_text("app")
    os.symlink("assets/app.js", ws / "dist" / "latest.js")
    os.symlink("../dist/assets", ws / "dist" / "again")
    archive = tmp_path / "e.tar"
    outputs.pack(ws, ["dist/"], "log", {"key": "k"}, archive)
    shutil.rmtree(ws / "dist")
    assert outputs.unpack(archive, ws, ["dist/"], task_hash="k") == "log"
    assert os.readlink(ws / "dist" / "latest.js") == "assets/app.js"
    assert (ws / "dist" / "again" / "app.js").read_text() == "app"


def test_tampered_local_entry_is_a_miss_with_a_warning(small, cli_json):
    assert cli_json(str(small.root))[0] == 0 and len(small.built()) == 5
    cache_dir = small.root / ".stageflow" / "cache"
    entries = sorted(cache_dir.glob("*.tar"))
    assert len(entries) == 5
    for entry in entries:  # flip the payload of dist/out.txt, keep the tar structure valid
        data = entry.read_bytes()
        at = data.index(b"@s/")
        entry.write_bytes(data[:at] + b"@X/" + data[at + 3 :])
    for name in small.dirs:
        shutil.rmtree(small.path(name) / "dist")
    shutil.rmtree(small.root / ".stageflow" / "state", ignore_errors=True)
    code, doc, _ = cli_json(str(small.root))
    assert code == 0 and doc["cached"] == [] and len(small.built()) == 5
    assert "does not match its digest" in json.dumps(doc)
    assert small.out("@s/web").startswith("@s/web:")


def test_entry_for_another_hash_is_a_miss(tmp_path: Path):
    ws = tmp_path / "ws"
    (ws / "dist").mkdir(parents=True)
    (ws / "dist" / "a.js").write_text("a")
    archive = tmp_path / "e.tar"
    outputs.pack(ws, ["dist/"], "log", {"key": "one"}, archive)
    with pytest.raises(CacheEntryCorrupt, match="another task hash"):
        outputs.unpack(archive, ws, ["dist/"], task_hash="two")


def test_http_cache_signature(small, cli_json, cache_server, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CACHE_SIG", "team-secret")
    (small.root / "stageflow.toml").write_text(
        '[build]\ncache = "http"\n'
        f'cache_options = {{url = "{cache_server.url}", signature_key_env = "CACHE_SIG"}}\n'
    )
    small.commit()
    assert cli_json(str(small.root))[0] == 0 and len(cache_server.entries) == 5
    _fresh_machine(small)
    small.built()
    code, doc, _ = cli_json(str(small.root))
    assert code == 0 and len(doc["cached"]) == 5  # signed with the key: hits
    # Another key (an attacker who can write the server but does not hold the key): every entry a miss.
    monkeypatch.setenv("CACHE_SIG", "attacker-key")
    _fresh_machine(small)
    code, doc, _ = cli_json(str(small.root))
    assert code == 0 and doc["cached"] == [] and len(small.built()) == 5
    assert "signature does not match" in json.dumps(doc)
    assert "attacker-key" not in json.dumps(doc) and "team-secret" not in json.dumps(doc)


def test_http_cache_signature_key_unset_is_a_clear_error(small, cli):
    (small.root / "stageflow.toml").write_text(
        '[build]\ncache = "http"\n'
        'cache_options = {url = "http://127.0.0.1:9/c", signature_key_env = "NOPE_SIG"}\n'
    )
    small.commit()
    code, out, err = cli("build", str(small.root))
    assert code == 2 and "NOPE_SIG, which is not set" in out + err and "Traceback" not in out + err


def test_http_cache_streams_and_caps_entry_size(tmp_path: Path, cache_server):
    cache = get_plugin_manager().build("build_caches", "http", {"url": cache_server.url, "max_entry_mb": 1})
    cache_server.entries["k" * 8] = b"\0" * (2 * 1024 * 1024)
    dest = tmp_path / "dl.tar"
    with pytest.raises(OSError, match="over max_entry_mb"):
        cache.fetch("k" * 8, dest)
    assert not dest.exists() and not list(tmp_path.glob("*.part"))


def test_killed_cache_write_leftover_is_removed(tmp_path: Path):
    import subprocess
    import sys

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    leftover = cache_dir / f".tmp-{dead.stdout.strip()}-abc.tar"
    leftover.write_bytes(b"\0" * 1024)
    cache = get_plugin_manager().build("build_caches", "local", {"dir": str(cache_dir)})
    ws = tmp_path / "ws"
    (ws / "dist").mkdir(parents=True)
    (ws / "dist" / "a.js").write_text("a")
    cache.store("k1", ws, ["dist/"], "")
    assert sorted(p.name for p in cache_dir.iterdir()) == ["k1.tar"]
