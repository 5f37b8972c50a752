"""Per-channel statistics for scoring: what a YouTube feed gives (views, ratings, upload times) kept
in the store at discovery, the formulas with exact numbers, precedence over [video] channel, and the
score of a candidate on that channel."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from stageflow.samples import SAMPLES_DIR

from stageflow.errors import BadInput
from stageflow.plugin_manager import get_plugin_manager
from stageflow.stages import MediaItem
from stageflow.video import channels as ch
from stageflow.video.analysis.evidence import InfluencerStats, candidate_id
from stageflow.video.analysis.scoring import influence_of
from stageflow.video.store import VideoStore

from .conftest import SHEETS_TOKEN, VIDEO

SAMPLE = SAMPLES_DIR / "youtube_channel_feed.xml"
G1 = (datetime(2026, 11, 19, 12, 30, tzinfo=UTC) - datetime(2025, 8, 2, 8, 0, tzinfo=UTC)).total_seconds()
G2 = (
    datetime(2026, 11, 20, 9, 0, 5, tzinfo=UTC) - datetime(2026, 11, 19, 12, 30, tzinfo=UTC)
).total_seconds()
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_feed_entries_carry_channel_id_and_ratings():
    from stageflow.video.feeds import parse_feed

    first, short, old = parse_feed(SAMPLE.read_bytes())
    assert first.extra == {"views": "48210", "channel_id": "UCexampleChannel0000001", "ratings": 1520}
    assert (short.extra["ratings"], old.extra["ratings"]) == (88, 420)


def test_formulas_exact():
    assert ch.engagement_rate([(1000, 50), (None, 3), (0, 5), (3000, 70), (500, None)]) == 120 / 4000
    assert ch.engagement_rate([(None, 1)]) is None
    weekly = [T0 + timedelta(days=7 * k) for k in range(4)]
    assert ch.upload_consistency(weekly) == 1.0
    # gaps 1 d and 3 d: mean 2 d, population std 1 d -> 1 - 0.5
    assert ch.upload_consistency([T0, T0 + timedelta(days=1), T0 + timedelta(days=4)]) == 0.5
    assert ch.upload_consistency([T0, T0 + timedelta(days=1), T0 + timedelta(days=1)]) is None  # 2 distinct
    # gaps 1, 1, 40 d: mean 14, std sqrt(338) = 18.4 -> CV > 1 -> 0
    assert ch.upload_consistency([T0 + timedelta(days=d) for d in (0, 1, 2, 42)]) == 0.0
    assert ch.authenticity([0.0, 0.29, 0.3, 0.9]) == 0.5 and ch.authenticity([]) is None


def test_rss_discovery_records_every_entry_of_the_channel(store):
    source = get_plugin_manager().build("sources", "rss", {"feeds": [str(SAMPLE)], "max_age_days": None})
    items = source.discover()
    assert [i.item_id for i in items] == ["AbCdEfGhIj0", "OldVideo0001"]  # the Short is filtered out ...
    from stageflow.store import open_store

    home = open_store()  # ... but recorded: it says something about the channel
    try:
        rows = home.conn.execute(
            "SELECT video_id, views, ratings FROM channel_videos ORDER BY video_id"
        ).fetchall()
        assert [tuple(r) for r in rows] == [
            ("rss:AbCdEfGhIj0", 48210, 1520), ("rss:OldVideo0001", 20001, 420), ("rss:ShOrTs12345", 3011, 88),
        ]  # fmt: skip
        stats = ch.stored_stats(home, "UCexampleChannel0000001")
        assert stats == {
            "subscribers": None,
            "engagement_rate": 2028 / 71222,  # (1520 + 88 + 420) / (48210 + 3011 + 20001)
            # gaps g1 (474 d 4.5 h), g2 (20.5 h): 1 - (|g1 - g2| / 2) / ((g1 + g2) / 2) = 2 g2 / (g1 + g2)
            "consistency": pytest.approx(2 * G2 / (G1 + G2), rel=1e-12),
            "authenticity": None,  # no candidates yet
        }
        assert ch.channel_of(home, "rss:OldVideo0001") == "UCexampleChannel0000001"
        # discovery again (views grew): refreshed, never duplicated
        extra = {"channel_id": "UCexampleChannel0000001", "views": "30000", "ratings": 500}
        ch.record_feed(home, [MediaItem("rss", "OldVideo0001", "t", "u", extra=extra)])
        got = home.conn.execute("SELECT COUNT(*), SUM(views) FROM channel_videos").fetchone()
        assert tuple(got) == (3, 81221)
    finally:
        home.close()


def _weekly_channel(store, channel="UCweekly", n=4):
    items = [
        MediaItem("rss", f"w{k}", f"video {k}", f"https://youtu.be/w{k}",
                  published=T0 + timedelta(days=7 * k), channel="Weekly",
                  extra={"channel_id": channel, "views": "1000", "ratings": r})
        for k, r in zip(range(n), (30, 50, 70, 50), strict=False)
    ]  # fmt: skip
    assert ch.record_feed(store, items, subscribers={channel: 250_000}) == n
    return items


def _candidate(store, video_id: str, start: float, ppl: float | None) -> None:
    data = {"start": start, "end": start + 1} | ({} if ppl is None else {"ppl_probability": ppl})
    VideoStore(store).upsert_candidate(candidate_id(video_id, start, start + 1), video_id=video_id,
                                       start=start, end=start + 1, data=data)  # fmt: skip


DEFAULTS = {"subscribers": 1000, "engagement_rate": 0.01, "consistency": 0.1, "authenticity": 0.2}


def test_influencer_stats_precedence(store):
    from stageflow.video.settings import VideoConfig

    _weekly_channel(store)
    for k, ppl in enumerate((0.0, 0.0, 0.8)):
        _candidate(store, "rss:w0", k * 10, ppl)
    _candidate(store, "rss:w1", 0, 0.1)
    _candidate(store, "rss:w1", 10, None)  # still pending: no PPL yet, not counted
    _candidate(store, "rss:w3", 0, 0.9)  # the video being scored: its own candidates do not count
    config = VideoConfig(channel=DEFAULTS)
    expected = {
        "subscribers": 250_000,
        "engagement_rate": 200 / 4000,
        "consistency": 1.0,
        "authenticity": 0.75,
    }
    assert ch.influencer_stats(store, "rss:w3", config) == expected
    assert ch.influencer_stats(store, "file:clip.mp4", config) == DEFAULTS  # no channel known
    assert ch.influencer_stats(None, "rss:w3", config) == DEFAULTS
    per_channel = VideoConfig(
        channel=DEFAULTS, channels={"UCweekly": {"authenticity": 0.6, "subscribers": 9}}
    )
    assert ch.influencer_stats(store, "rss:w3", per_channel) == expected | {
        "authenticity": 0.6,
        "subscribers": 9,
    }
    # a channel with too little history keeps the defaults for what it cannot tell
    ch.record_feed(store, [MediaItem("rss", "n1", "t", "u", published=T0, extra={"channel_id": "UCnew"})])
    assert ch.influencer_stats(store, "rss:n1", config) == DEFAULTS


def test_score_uses_the_videos_channel(store):
    from stageflow.video.analysis.ppl import PplPatterns
    from stageflow.video.analysis.rules import RulesAnalyzer
    from stageflow.video.pipeline import Analysis, VideoRecord, analyse
    from stageflow.video.settings import VideoConfig

    _weekly_channel(store)
    for k, ppl in enumerate((0.0, 0.0, 0.0, 0.8)):
        _candidate(store, "rss:w0", k * 10, ppl)
    i = influence_of(
        InfluencerStats(subscribers=250_000, engagement_rate=0.05, consistency=1.0, authenticity=0.75)
    )
    assert (i.subscribers, i.engagement, i.consistency, i.authenticity) == (
        math.log10(250_000) / 7,
        0.5,
        1.0,
        0.75,
    )
    assert i.value == pytest.approx(0.730284, abs=1e-6)
    analysis = Analysis(RulesAnalyzer(), None, PplPatterns.load())
    config = VideoConfig(channel=DEFAULTS)
    scores = {}
    for vid in ("rss:w3", "file:elsewhere.mp4"):
        record = VideoRecord.model_validate({**VIDEO, "id": vid, "candidates": []})
        done = analyse(record, None, None, config, analysis, store=store)
        scores[vid] = {c["product_name"]: c["score"] for c in done.record.candidates}
    # S = .8, E = .75 for the sunscreen range (issue 18 scoring): round((.5 S + .35 E + .15 I) * 100)
    s_part, e_part = 0.5 * 0.8, 0.35 * 0.75
    assert (
        scores["rss:w3"]["라운드랩 자작나무 선크림"] == round((s_part + e_part + 0.15 * 0.730284) * 100) == 77
    )
    # defaults: I = .25 * 3/7 + .35 * .1 + .25 * .1 + .15 * .2 = .197143
    assert scores["file:elsewhere.mp4"]["라운드랩 자작나무 선크림"] == 69


def test_sheet_subscribers_column_is_kept(sheets_server, store):
    from stageflow.plugins.gsheets import SheetChannelsConfig, SheetChannelsSource

    from stageflow.store import open_store

    sheets_server.sheets["sheet-1"]["Channels"] = [
        ["name", "channel_id", "url", "subscribers"],
        ["예시 채널", "UCexampleChannel0000001", str(SAMPLE), "1,250,000"],
    ]
    config = SheetChannelsConfig(
        spreadsheet_key="sheet-1", access_token=SHEETS_TOKEN, base_url=sheets_server.url, max_age_days=None
    )
    assert len(SheetChannelsSource(config, sleep=lambda s: None).discover()) == 2
    home = open_store()
    try:
        assert ch.stored_stats(home, "UCexampleChannel0000001")["subscribers"] == 1_250_000
        assert home.conn.execute("SELECT COUNT(*) FROM channel_videos").fetchone()[0] == 3
    finally:
        home.close()


def test_bad_subscribers_cell_is_one_clear_error_and_records_nothing(sheets_server):
    from stageflow.plugins.gsheets import SheetChannelsConfig, SheetChannelsSource

    from stageflow.store import open_store

    sheets_server.sheets["sheet-1"]["Channels"] = [
        ["name", "channel_id", "url", "subscribers"],
        ["예시 채널", "UCexampleChannel0000001", str(SAMPLE), "1,250,000"],
        ["B", "UCb", str(SAMPLE), "about 3k"],
    ]
    config = SheetChannelsConfig(
        spreadsheet_key="sheet-1", access_token=SHEETS_TOKEN, base_url=sheets_server.url
    )
    with pytest.raises(
        BadInput, match=r"channels worksheet row 3: subscribers 'about 3k' is not a whole number"
    ):
        SheetChannelsSource(config, sleep=lambda s: None).discover()
    home = open_store()
    try:
        assert home.conn.execute("SELECT COUNT(*) FROM channels").fetchone()[0] == 0
    finally:
        home.close()


def test_bad_per_channel_config_is_rejected():
    from stageflow.errors import ConfigError
    from stageflow.video.settings import VideoConfig, apply_overrides

    with pytest.raises(ConfigError, match=r"\[video\] channels.UC1.consistency"):
        apply_overrides(VideoConfig(), ["channels.UC1.consistency=3"])
