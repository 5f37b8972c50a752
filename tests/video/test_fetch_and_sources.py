"""Sources and fetching against a real local HTTP server: media download with size cap, resume and
retries; feed URLs answering 404/500; malformed feeds; the urls source and downloader choice."""

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
from stageflow.video.feeds import read_feed_bytes
from stageflow.video.fetch import FetchOptions, TooLarge, download

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes

FEED = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:yt="http://www.youtube.com/xml/schemas/2015"
      xmlns:media="http://search.yahoo.com/mrss/">
  <title>Channel</title>
  <entry><id>yt:video:AAA</id><yt:videoId>AAA</yt:videoId><title>New serum review</title>
    <link rel="alternate" href="https://www.youtube.com/watch?v=AAA"/><published>{now}</published></entry>
  <entry><id>yt:video:BBB</id><yt:videoId>BBB</yt:videoId><title>short</title>
    <link rel="alternate" href="https://www.youtube.com/shorts/BBB"/><published>{now}</published></entry>
</feed>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        _Handler.hits[self.path] += 1
        if self.path.startswith("/status/"):
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.end_headers()
            return
        if self.path == "/video.mp4":
            start = 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD) - start))
            self.end_headers()
            self.wfile.write(PAYLOAD[start:])
            return
        if self.path == "/chunked.mp4":  # no Content-Length: the cap is enforced while streaming
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                chunk = PAYLOAD[:10000]
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/feed.xml":
            from datetime import UTC, datetime

            body = FEED.format(now=datetime.now(UTC).isoformat()).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(404)
        self.end_headers()


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = Counter()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


FAST = FetchOptions(retries=2, backoff_s=0.01)


def test_download_streams_to_disk(server, tmp_path):
    path = download(f"{server}/video.mp4", tmp_path, FAST)
    assert path.read_bytes() == PAYLOAD and path.suffix == ".mp4"
    assert not list(tmp_path.glob("*.part"))
    assert download(f"{server}/video.mp4", tmp_path, FAST) == path  # already there: no request
    assert _Handler.hits["/video.mp4"] == 1


def test_download_resumes_a_partial_file(server, tmp_path):
    from stageflow.video.fetch import local_name

    url = f"{server}/video.mp4"
    (tmp_path / (local_name(url) + ".part")).write_bytes(PAYLOAD[:30000])
    assert download(url, tmp_path, FAST).read_bytes() == PAYLOAD


def test_url_over_the_size_cap(server, tmp_path):
    with pytest.raises(TooLarge, match="over the size cap"):
        download(f"{server}/video.mp4", tmp_path, FetchOptions(max_bytes=50000, backoff_s=0.01))
    with pytest.raises(TooLarge, match="over the size cap"):
        download(f"{server}/chunked.mp4", tmp_path, FetchOptions(max_bytes=50000, backoff_s=0.01))
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_server_errors_are_retried_then_reported(server, tmp_path):
    with pytest.raises(JobFailed, match=r"HTTP 503 \(after 2 retries\)"):
        download(f"{server}/status/503", tmp_path, FAST)
    assert _Handler.hits["/status/503"] == 3


def test_feed_500_is_retried_then_reported(server):
    with pytest.raises(JobFailed, match=r"HTTP 500 \(after 2 retries\)"):
        read_feed_bytes(f"{server}/status/500", retries=2, backoff_s=0.01)
    assert _Handler.hits["/status/500"] == 3


def test_feed_404_is_reported_without_retrying(server):
    with pytest.raises(JobFailed, match="HTTP 404"):
        read_feed_bytes(f"{server}/status/404", retries=2, backoff_s=0.01)
    assert _Handler.hits["/status/404"] == 1


def test_feed_inputs_resolve_with_filters_and_errors(server, tmp_path):
    plugins = get_plugin_manager()
    bad = tmp_path / "broken.xml"
    bad.write_text("<rss><channel><item><title>unclosed", encoding="utf-8")
    refs = analyze.resolve_inputs(
        [f"{server}/feed.xml", f"{server}/status/404", str(bad)], plugins, {"backoff_s": 0.01}
    )
    assert [(r.id, r.error is None) for r in refs] == [
        ("rss:AAA", True),  # the Short is filtered out
        (f"{server}/status/404", False),
        (str(bad), False),
    ]
    assert refs[0].location == "https://www.youtube.com/watch?v=AAA"
    assert "HTTP 404" in refs[1].error and "not an RSS/Atom feed" in refs[2].error


def test_channels_file_applies_per_channel_keywords(server, tmp_path):
    channels = tmp_path / "channels.toml"
    channels.write_text(
        f'[[channel]]\nfeed = "{server}/feed.xml"\nkeywords = ["serum"]\n'
        f'[[channel]]\nfeed = "{server}/feed.xml"\nkeywords = ["nothing-matches"]\n',
        encoding="utf-8",
    )
    refs = analyze.resolve_inputs([str(channels)], get_plugin_manager())
    assert [r.id for r in refs] == ["rss:AAA"]


def test_urls_source_and_downloader_choice(server, tmp_path):
    plugins = get_plugin_manager()
    [item] = plugins.build("sources", "urls", {"urls": [f"{server}/video.mp4"]}).discover()
    assert item.source == "urls" and item.title == "video"
    assert analyze.pick_downloader(plugins, f"{server}/video.mp4").can_handle(item.url)
    assert analyze.pick_downloader(plugins, f"{server}/video.mp4").__class__.__name__ == "HttpDownloader"
    yt = analyze.pick_downloader(plugins, "https://www.youtube.com/watch?v=AAA")
    assert yt.__class__.__name__ == "YtDlpDownloader"
    with pytest.raises(BadInput, match="no downloader handles this URL"):
        analyze.pick_downloader(plugins, "rtmp://example.invalid/live")
    with pytest.raises(BadInput, match="not an http"):
        plugins.build("sources", "urls", {"urls": ["ftp://x/y.mp4"]})


def test_a_third_party_downloader_is_preferred(tmp_path):
    from stageflow.hookspecs import hookimpl
    from stageflow.plugin_manager import load_plugins

    class YtDlpLike:
        def __init__(self, config):
            pass

        def can_handle(self, url: str) -> bool:
            return "youtube.com/watch" in url

        def download(self, url: str, dest: Path) -> Path:
            return dest / "x.mp4"

    class Plugin:
        @hookimpl
        def register_downloaders(self, register):
            register("ytdlp", YtDlpLike)

    plugins = load_plugins(extra_plugins=[("ytdlp", Plugin())])
    assert isinstance(analyze.pick_downloader(plugins, "https://www.youtube.com/watch?v=AAA"), YtDlpLike)
