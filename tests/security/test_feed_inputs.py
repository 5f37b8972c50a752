"""Hostile or broken feed servers (a real HTTP server on 127.0.0.1): entries without guid or link
keep distinct ids derived from their content, and an HTML page or an empty 200 is reported."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator

import pytest

from stageflow.plugin_manager import load_plugins

NO_IDS = (
    b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>t</title>
"""
    + b"".join(
        f"<item><title>video {i}</title><description>about {i}</description></item>".encode()
        for i in range(5)
    )
    + b"</channel></rss>"
)


@pytest.fixture
def feed_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = pages.get(self.path, b"")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pages
    server.shutdown()
    server.server_close()


def _source(url: str):
    return load_plugins().build(
        "sources", "rss", {"feeds": [url], "max_age_days": None, "channel_stats": False, "retries": 0}
    )


def test_items_without_guid_or_link_keep_distinct_ids(feed_server) -> None:
    base, pages = feed_server
    pages["/feed"] = NO_IDS
    items = _source(base + "/feed").discover()
    assert len(items) == 5 and len({i.item_id for i in items}) == 5 and all(i.item_id for i in items)
    assert [i.item_id for i in _source(base + "/feed").discover()] == [i.item_id for i in items]


@pytest.mark.parametrize(
    "body", [b"", b"<!DOCTYPE html><html><body>Sign in</body></html>"], ids=["empty", "html"]
)
def test_html_or_empty_answer_warns(feed_server, caplog, body: bytes) -> None:
    base, pages = feed_server
    pages["/feed"] = body
    with caplog.at_level(logging.WARNING):
        assert _source(base + "/feed").discover() == []
    assert any("/feed" in r.getMessage() and "check the feed URL" in r.getMessage() for r in caplog.records)
