"""The built-in ``yt-dlp`` downloader, for real, against a local HTTP server on 127.0.0.1 (YouTube
itself cannot be reached here): an mp4 behind an extension-less URL and an HLS playlist (yt-dlp's
generic extractor handles both), a download cut mid-way that resumes with a Range request, the size
cap, a URL yt-dlp cannot handle, and the metadata sidecar."""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from stageflow.errors import BadInput, JobFailed
from stageflow.plugin_manager import get_plugin_manager
from stageflow.video import pipeline as analyze

pytest.importorskip("yt_dlp", reason="the youtube extra is not installed: pip install 'stageflow[youtube]'")


def _hls(root: Path, seconds: int = 3) -> dict[str, bytes]:
    """An HLS playlist of 1 s MPEG-TS segments made with PyAV (each starts on a keyframe)."""
    import av
    import numpy as np

    files: dict[str, bytes] = {}
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
    for n in range(seconds):
        seg = root / f"seg{n}.ts"
        with av.open(str(seg), "w", format="mpegts") as out:
            st = out.add_stream("libx264", rate=10)
            st.width, st.height, st.pix_fmt = 160, 90, "yuv420p"
            for i in range(10):
                img = np.full((90, 160, 3), (n * 80) % 255, np.uint8)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = n * 10 + i
                for p in st.encode(frame):
                    out.mux(p)
            for p in st.encode():
                out.mux(p)
        files[f"/hls/seg{n}.ts"] = seg.read_bytes()
        lines += ["#EXTINF:1.0,", f"seg{n}.ts"]
    files["/hls/index.m3u8"] = ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()
    return files


class _Server(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[bytes, str]] = {}
    hits: Counter = Counter()
    ranges: list[str] = []
    cut: dict[str, int] = {}  # path -> the full GET (1-based) whose connection drops mid-way
    gets: Counter = Counter()

    def log_message(self, *args):
        pass

    def do_HEAD(self):  # noqa: N802
        self._answer(body=False)

    def do_GET(self):  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = self.path.split("?")[0]
        _Server.hits[path] += 1
        if path not in self.files:
            self.send_response(404)
            self.end_headers()
            return
        data, ctype = self.files[path]
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng != "bytes=0-":
            _Server.ranges.append(rng)
            start = int(rng[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not body:
            return
        if self.command == "GET" and start == 0:
            _Server.gets[path] += 1
        if start == 0 and _Server.cut.get(path) == _Server.gets[path]:
            self.wfile.write(data[: len(data) // 2])  # the connection drops mid-way
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@pytest.fixture
def server(media, tmp_path) -> Iterator[str]:
    talk = media.talk.read_bytes()
    files = {"/watch/talk": (talk, "video/mp4"), "/cut/talk": (talk, "video/mp4")}
    files["/page.html"] = (b"<html><body>no video here</body></html>", "text/html")
    files.update(
        {
            k: (v, "application/vnd.apple.mpegurl" if k.endswith("m3u8") else "video/mp2t")
            for k, v in _hls(tmp_path).items()
        }
    )
    _Server.files, _Server.hits, _Server.ranges = files, Counter(), []
    # GET 1 is the generic extractor looking at the URL; GET 2 is the download itself
    _Server.cut, _Server.gets = {"/cut/talk": 2}, Counter()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _ytdlp(**options):
    return get_plugin_manager().build("downloaders", "yt-dlp", options)


def test_an_mp4_page_url_downloads_with_metadata(server, media, tmp_path):
    plugins = get_plugin_manager()
    url = f"{server}/watch/talk"
    downloader = analyze.pick_downloader(plugins, url)
    assert type(downloader).__name__ == "YtDlpDownloader"
    path = downloader.download(url, tmp_path / "dl")
    assert path.read_bytes() == media.talk.read_bytes()
    meta = analyze.read_download_meta(path)
    assert meta["title"] == "talk" and meta["extractor"] == "Generic"
    assert downloader.download(url, tmp_path / "dl") == path  # already there: nothing fetched again


def test_an_hls_playlist_downloads_every_segment(server, tmp_path):
    from stageflow.video.decode import probe

    path = _ytdlp().download(f"{server}/hls/index.m3u8", tmp_path / "dl")
    assert all(_Server.hits[f"/hls/seg{n}.ts"] >= 1 for n in range(3))
    info = probe(path)
    assert info.has_video and info.duration_s == pytest.approx(3.0, abs=0.3)


def test_a_download_cut_mid_way_resumes_with_a_range_request(server, media, tmp_path):
    path = _ytdlp(retries=3).download(f"{server}/cut/talk", tmp_path / "dl")
    assert path.read_bytes() == media.talk.read_bytes()
    half = len(media.talk.read_bytes()) // 2
    assert any(int(r[6:].split("-")[0]) >= half - 65536 and r != "bytes=0-" for r in _Server.ranges), (
        _Server.ranges
    )


def test_size_cap_and_unsupported_url(server, tmp_path):
    from stageflow.video.fetch import TooLarge

    with pytest.raises(TooLarge, match="size cap"):
        _ytdlp(max_bytes=1000).download(f"{server}/watch/talk", tmp_path / "dl")
    assert not list((tmp_path / "dl").glob("*.mp4"))  # no partial file under the final name
    with pytest.raises(JobFailed, match=r"page.html: yt-dlp cannot download it: .*Unsupported URL"):
        _ytdlp(retries=0).download(f"{server}/page.html", tmp_path / "dl")


def test_format_is_configurable_and_bad_options_are_one_line():
    assert _ytdlp().config.format == "bv*[height<=720]+ba/b"
    assert _ytdlp(format="ba/b").config.format == "ba/b"
    with pytest.raises(BadInput, match="formats"):
        _ytdlp(formats="x")


def test_analysis_goes_on_after_a_url_yt_dlp_cannot_handle(server, tmp_path):
    from stageflow.video.settings import VideoConfig

    plugins = get_plugin_manager()
    config = VideoConfig.model_validate(
        {"transcriber": "", "detector": "", "ocr": [], "yt-dlp": {"retries": 0}}
    )
    ctx = analyze.AnalyzeContext(plugins, config, analyze.build_backends(plugins, config), tmp_path / "out")
    inputs = [f"{server}/missing/index.m3u8", f"{server}/hls/index.m3u8"]
    doc = analyze.analyze(analyze.resolve_inputs(inputs, plugins), ctx)
    bad, good = doc["videos"]
    assert (
        bad["input"] == inputs[0] and "yt-dlp cannot download it: " in bad["error"] and "404" in bad["error"]
    )
    assert "\n" not in bad["error"] and "Traceback" not in bad["error"]
    assert good["error"] is None and good["duration_s"] == pytest.approx(3.0, abs=0.3)
    assert good["id"] == f"url:{inputs[1]}" and good["title"] == "index"  # the title from yt-dlp's metadata
