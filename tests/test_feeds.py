"""Feed parsing on the real-format YouTube channel feed, and the per-channel filters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from stageflow.samples import SAMPLES_DIR

from stageflow.errors import BadInput
from stageflow.plugin_manager import load_plugins
from stageflow.video.feeds import FeedFilter, filter_items, parse_feed

FEED = SAMPLES_DIR / "youtube_channel_feed.xml"
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_parse_youtube_feed():
    items = parse_feed(FEED.read_bytes())
    assert [i.item_id for i in items] == ["AbCdEfGhIj0", "ShOrTs12345", "OldVideo0001"]
    first = items[0]
    assert first.url == "https://www.youtube.com/watch?v=AbCdEfGhIj0"
    assert first.published == datetime(2026, 11, 20, 9, 0, 5, tzinfo=UTC)
    assert first.thumbnail == "https://i1.ytimg.com/vi/AbCdEfGhIj0/hqdefault.jpg"
    assert first.channel == "예시 채널 Example Vlog"
    assert "유료광고" in first.description
    assert [i.is_short for i in items] == [False, True, False]


def test_filters_age_shorts_keywords():
    items = parse_feed(FEED.read_bytes())
    assert [i.item_id for i in filter_items(items, FeedFilter(), NOW)] == ["AbCdEfGhIj0"]
    everything = FeedFilter(max_age_days=None, skip_shorts=False)
    assert len(filter_items(items, everything, NOW)) == 3
    keyword = FeedFilter(max_age_days=None, keywords=("립스틱",))
    assert [i.item_id for i in filter_items(items, keyword, NOW)] == ["AbCdEfGhIj0"]


def test_rss_source_backend_reads_a_file():
    source = load_plugins().build("sources", "rss", {"feeds": [str(FEED)], "max_age_days": None})
    assert [i.item_id for i in source.discover()] == ["AbCdEfGhIj0", "OldVideo0001"]


def test_rss_source_needs_a_feed():
    with pytest.raises(BadInput, match="option 'feeds'"):
        load_plugins().build("sources", "rss", {"feeds": []})


def test_missing_feed_file_is_bad_input(tmp_path):
    source = load_plugins().build("sources", "rss", {"feeds": [str(tmp_path / "none.xml")]})
    with pytest.raises(BadInput, match="no such file or URL"):
        source.discover()


def test_not_a_feed(tmp_path):
    with pytest.raises(BadInput, match="not an RSS/Atom feed"):
        parse_feed(b"\x00\x01 definitely not xml")


def test_folder_source_dedups_by_content(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"same")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "copy.MOV").write_bytes(b"same")
    (tmp_path / "notes.txt").write_text("x")
    items = load_plugins().build("sources", "folder", {"path": str(tmp_path)}).discover()
    assert len(items) == 2 and items[0].item_id == items[1].item_id


def test_jsonl_sink_upserts_by_key(tmp_path):
    sink = load_plugins().build("sinks", "jsonl", {"directory": str(tmp_path)})
    sink.write("videos", [{"id": "a", "v": 1}, {"id": "b", "v": 1}, {"note": "no key"}])
    sink.write("videos", [{"id": "a", "v": 2}, {"id": "c", "v": 1}])
    import json

    rows = [json.loads(line) for line in (tmp_path / "videos.jsonl").read_text().splitlines()]
    assert rows == [{"id": "a", "v": 2}, {"id": "b", "v": 1}, {"id": "c", "v": 1}, {"note": "no key"}]
    assert not list(tmp_path.glob("*.tmp"))
