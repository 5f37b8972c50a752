"""Size limits where the network feeds the disk: ``[video.http] max_bytes`` (and ``--set
http.max_bytes=...``) caps what the built-in downloader fetches from a (real, 127.0.0.1) server,
and a bad value is caught by ``stageflow validate``."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stageflow.plugin_manager import get_plugin_manager
from stageflow.video.fetch import TooLarge
from stageflow.video.pipeline import VideoRef, acquire
from stageflow.video.settings import VideoConfig, apply_overrides


@pytest.fixture
def big_video() -> Iterator[str]:
    body = b"\0" * 200_000

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/big.mp4"
    server.shutdown()
    server.server_close()


def _ref(url: str) -> VideoRef:
    return VideoRef(id="big", location=url, source="urls", title="big")


def test_video_http_max_bytes_is_honoured(big_video: str, tmp_path: Path) -> None:
    config = VideoConfig.model_validate({"http": {"max_bytes": 10_000, "retries": 0}})
    with pytest.raises(TooLarge, match="10000"):
        acquire(_ref(big_video), get_plugin_manager(), tmp_path / "dl", config)
    assert not [p for p in (tmp_path / "dl").rglob("*") if p.is_file() and p.stat().st_size > 10_000]


def test_set_http_max_bytes_is_honoured(big_video: str, tmp_path: Path) -> None:
    config = apply_overrides(VideoConfig(), ["http.max_bytes=5000", "http.retries=0"])
    with pytest.raises(TooLarge, match="5000"):
        acquire(_ref(big_video), get_plugin_manager(), tmp_path / "dl", config)


def test_bad_video_http_options_fail_validate(cli, tmp_path: Path) -> None:
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text('[video]\ntranscriber = ""\ndetector = ""\nocr = []\n[video.http]\nmax_bytes = "lots"\n')
    code, out, err = cli("validate", "--config", cfg)
    assert code != 0 and "[video.http]" in out + err
