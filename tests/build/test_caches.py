"""The built-in cache backends on real files and a real local HTTP server: atomic entries, LRU size
cap, restore replacing stale outputs, and the http backend's GET/PUT protocol."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stageflow.build import outputs
from stageflow.build.model import CacheEntryCorrupt
from stageflow.plugin_manager import get_plugin_manager


def _workspace(root: Path, text: str) -> Path:
    (root / "dist" / "sub").mkdir(parents=True, exist_ok=True)
    (root / "dist" / "index.js").write_text(text)
    (root / "dist" / "sub" / "more.js").write_text(text * 2)
    return root


def test_local_store_fetch_restore_roundtrip(tmp_path: Path):
    cache = get_plugin_manager().build("build_caches", "local", {"dir": str(tmp_path / "cache")})
    ws = _workspace(tmp_path / "ws", "v1")
    cache.store("a" * 64, ws, ["dist/"], "log line\n")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["a" * 64 + ".tar"]  # no temp files left
    (ws / "dist" / "index.js").write_text("stale")
    (ws / "dist" / "extra.js").write_text("left over from another build")
    archive = cache.fetch("a" * 64, tmp_path / "dest")
    assert outputs.unpack(archive, ws, ["dist/"]) == "log line\n"
    assert sorted(p.relative_to(ws).as_posix() for p in ws.rglob("*") if p.is_file()) == [
        "dist/index.js",
        "dist/sub/more.js",
    ]
    assert (ws / "dist" / "index.js").read_text() == "v1"
    assert cache.fetch("b" * 64, tmp_path / "dest") is None and not cache.contains("b" * 64)


def test_corrupt_entry_leaves_outputs_alone(tmp_path: Path):
    ws = _workspace(tmp_path / "ws", "current")
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(CacheEntryCorrupt):
        outputs.unpack(bad, ws, ["dist/"])
    assert (ws / "dist" / "index.js").read_text() == "current"
    assert not [p for p in ws.iterdir() if p.name.startswith(".stageflow-restore-")]


def test_local_lru_eviction_keeps_recently_used(tmp_path: Path):
    cache = get_plugin_manager().build(
        "build_caches", "local", {"dir": str(tmp_path / "c"), "max_size_mb": 1}
    )
    ws = tmp_path / "ws"
    (ws / "dist").mkdir(parents=True)
    (ws / "dist" / "big.bin").write_bytes(os.urandom(400 * 1024))
    for i, key in enumerate(["k1", "k2"]):
        cache.store(key, ws, ["dist/"], "")
        os.utime(tmp_path / "c" / f"{key}.tar", ns=(i * 10**9, i * 10**9))
    cache.fetch("k1", tmp_path / "x")  # k1 becomes the most recently used
    cache.store("k3", ws, ["dist/"], "")  # over 1 MB: the least recently used (k2) goes
    assert sorted(p.stem for p in (tmp_path / "c").glob("*.tar")) == ["k1", "k3"]


class _Store(http.server.BaseHTTPRequestHandler):
    entries: dict[str, bytes] = {}
    auth: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.auth.append(self.headers.get("Authorization", ""))
        body = self.entries.get(self.path.rsplit("/", 1)[1])
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def do_HEAD(self) -> None:
        self.send_response(200 if self.path.rsplit("/", 1)[1] in self.entries else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        self.entries[self.path.rsplit("/", 1)[1]] = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def http_cache_url() -> Iterator[str]:
    _Store.entries = {}
    _Store.auth = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cache"
    server.shutdown()
    server.server_close()


def test_http_cache_put_get(tmp_path: Path, http_cache_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CACHE_TOKEN", "s3cret")
    cache = get_plugin_manager().build(
        "build_caches", "http", {"url": http_cache_url, "token_env": "CACHE_TOKEN"}
    )
    ws = _workspace(tmp_path / "ws", "remote")
    assert cache.fetch("f" * 64, tmp_path / "dl.tar") is None
    cache.store("f" * 64, ws, ["dist/"], "remote log")
    assert cache.contains("f" * 64)
    other = tmp_path / "other"
    other.mkdir()
    archive = cache.fetch("f" * 64, tmp_path / "dl.tar")
    assert outputs.unpack(archive, other, ["dist/"]) == "remote log"
    assert (other / "dist" / "sub" / "more.js").read_text() == "remoteremote"
    assert _Store.auth[-1] == "Bearer s3cret"


def test_http_cache_unreachable_is_an_oserror(tmp_path: Path):
    cache = get_plugin_manager().build(
        "build_caches", "http", {"url": "http://127.0.0.1:9/x", "timeout_s": 2}
    )
    with pytest.raises(OSError, match="GET http://127.0.0.1:9/x/"):
        cache.fetch("a" * 64, tmp_path / "d")


def test_http_remote_cache_end_to_end(small, cli_json, http_cache_url: str):
    import shutil

    (small.root / "stageflow.toml").write_text(
        f'[build]\ncache = "http"\ncache_options = {{url = "{http_cache_url}"}}\n'
    )
    small.commit()
    assert cli_json(str(small.root))[0] == 0 and len(small.built()) == 5
    assert len(_Store.entries) == 5
    shutil.rmtree(small.root / ".stageflow")  # another machine: no local state, only the remote cache
    for name in small.dirs:
        shutil.rmtree(small.path(name) / "dist")
    code, doc, _ = cli_json(str(small.root))
    assert code == 0 and small.built() == [] and len(doc["cached"]) == 5
    assert small.out("@s/web").startswith("@s/web:")
