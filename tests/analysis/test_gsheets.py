"""The ``gsheets`` sink: real gspread with a session rebased onto a loopback Sheets v4 server and a
no-network token credential. One batchUpdate per write, no duplicate lines, review-sync through the
status machine, missing / unshared sheets, 429 Retry-After, channels worksheet."""

from __future__ import annotations

import pytest

from stageflow.errors import BadInput, ServiceError
from stageflow.video.analysis.engine import analyze_video
from stageflow.video.analysis.evidence import VideoEvidence
from stageflow.video.analysis.rules import RulesAnalyzer
from stageflow.video.store import VideoStore

from .conftest import CHANNEL, SHEETS_TOKEN, VIDEO
from .servers import Fault


def sink(server, sleeps=None, key="sheet-1", token=SHEETS_TOKEN, **cfg):
    from stageflow.plugins.gsheets import GSheetsConfig, GSheetsSink

    config = GSheetsConfig(
        spreadsheet_key=key, access_token=token, base_url=server.url, backoff_s=0.01, **cfg
    )
    return GSheetsSink(config, sleep=sleeps if sleeps is not None else (lambda s: None))


def records(store):
    result = analyze_video(
        VideoEvidence.from_part1(VIDEO, channel=CHANNEL), analyzer=RulesAnalyzer(), store=store
    )
    return result.to_output()


def test_write_one_batch_update_with_header(sheets_server, store):
    recs = records(store)
    assert sink(sheets_server).write("candidates", recs) == 3
    writes = [r for r in sheets_server.requests if r.method != "GET"]
    assert [w.path for w in writes] == ["/v4/spreadsheets/sheet-1/values:batchUpdate"]
    body = writes[0].json()
    assert body["valueInputOption"] == "RAW"
    assert body["data"][0]["range"] == "'Review'!A1:N1"
    rows = sheets_server.sheets["sheet-1"]["Review"]
    assert rows[0][:3] == ["id", "video_id", "status"] and len(rows) == 4
    assert rows[1][0] == recs[0]["id"] and rows[1][2] == recs[0]["status"]
    assert rows[1][5] == "뷰티 > 스킨케어"


def test_same_video_twice_no_duplicate_lines_and_status_kept(sheets_server, store):
    recs = records(store)
    s = sink(sheets_server)
    s.write("candidates", recs)
    sheets_server.sheets["sheet-1"]["Review"][1][2] = "approved"  # a reviewer edits the sheet
    s.write("candidates", records(store))
    rows = sheets_server.sheets["sheet-1"]["Review"]
    assert len(rows) == 4
    assert rows[1][2] == "approved"
    assert len([r for r in sheets_server.requests if r.method == "POST"]) == 2


def test_review_sync_moves_candidates_through_the_status_machine(sheets_server, store):
    recs = records(store)
    s = sink(sheets_server)
    s.write("candidates", recs)
    rows = sheets_server.sheets["sheet-1"]["Review"]
    filtered = next(i for i, r in enumerate(rows) if r[2] == "no_commerce_match")
    low = [i for i, r in enumerate(rows) if r[2] == "no_commerce_match" and i != filtered]
    rows[filtered][2] = "needs_review"  # link added by hand -> allowed
    for i in low:
        rows[i][2] = "published"  # not allowed from no_commerce_match
    report = s.review_sync(store)
    assert [c["to"] for c in report["changed"]] == ["needs_review"]
    assert len(report["errors"]) == len(low) and "cannot become 'published'" in report["errors"][0]
    cid = rows[filtered][0]
    assert VideoStore(store).candidate_status(cid) == "needs_review"
    assert VideoStore(store).status_history(cid)[-1]["actor"] == "sheet"
    rows[filtered][2] = "approved"
    assert s.review_sync(store)["changed"] == [{"id": cid, "from": "needs_review", "to": "approved"}]
    assert s.review_sync(store)["changed"] == []  # nothing new


def test_review_sync_reads_the_old_status_name_as_the_new_one(sheets_server, store):
    """A row written before #19 still shows 'filtered_no_coupang' in the reviewers' column (the sink
    never rewrites it): that is the candidate's status, not a wanted move, so no error and no change."""
    s = sink(sheets_server)
    s.write("candidates", records(store))
    rows = sheets_server.sheets["sheet-1"]["Review"]
    stale = [r for r in rows[1:] if r[2] == "no_commerce_match"]
    assert stale
    for row in stale:
        row[2] = "filtered_no_coupang"
    assert s.review_sync(store)["changed"] == [] and s.review_sync(store)["errors"] == []
    assert VideoStore(store).candidate_status(stale[0][0]) == "no_commerce_match"


def test_missing_sheet(sheets_server):
    with pytest.raises(BadInput, match="spreadsheet nope not found: check spreadsheet_key"):
        sink(sheets_server, key="nope").write("candidates", [{"id": "x"}])


def test_sheet_not_shared_with_service_account(sheets_server):
    with pytest.raises(BadInput, match="not shared with .*Editor") as info:
        sink(sheets_server, key="sheet-private").write("candidates", [{"id": "x"}])
    assert SHEETS_TOKEN not in str(info.value)


def test_missing_worksheet(sheets_server):
    with pytest.raises(BadInput, match="add the worksheets 'Nope'"):
        sink(sheets_server, review_worksheet="Nope").write("candidates", [{"id": "x"}])


def test_429_retry_after_and_5xx_burst(sheets_server, sleeps, store):
    recs = records(store)
    quota = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}
    sheets_server.fail_next(
        Fault(429, quota, {"Retry-After": "5"}, path_contains="/values"), Fault(503, "{}")
    )
    assert sink(sheets_server, sleeps).write("candidates", recs) == 3
    assert sleeps[0] == 5.0 and len(sleeps) == 2


def test_persistent_errors_bounded(sheets_server, sleeps):
    sheets_server.fail_next(*[Fault(500, {"error": {"code": 500, "message": "backend"}}) for _ in range(10)])
    with pytest.raises(ServiceError, match="failed after 2 attempts"):
        sink(sheets_server, sleeps, attempts=2).write("candidates", [{"id": "x"}])


def test_other_tables_ignored(sheets_server):
    assert sink(sheets_server).write("videos", [{"id": "v"}]) == 0
    assert sheets_server.requests == []


def test_channels_worksheet(sheets_server):
    channels = sink(sheets_server).read_channels()
    assert channels[0] == {"name": "셀럽A", "channel_id": "UC123", "keywords": "셀럽A",
                           "url": "https://www.youtube.com/feeds/videos.xml?channel_id=UC123"}  # fmt: skip
    assert [c["name"] for c in channels] == ["셀럽A", "Blog"]


def test_service_account_missing_is_clear(monkeypatch):
    from stageflow.plugins.gsheets import GSheetsConfig, GSheetsSink

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(BadInput, match="service_account_file"):
        GSheetsSink(GSheetsConfig(spreadsheet_key="k"))


def test_channels_worksheet_as_a_source(sheets_server):
    from stageflow.plugins.gsheets import SheetChannelsConfig, SheetChannelsSource
    from stageflow.samples import SAMPLES_DIR

    feed = str(SAMPLES_DIR / "youtube_channel_feed.xml")
    sheets_server.sheets["sheet-1"]["Channels"] = [
        ["name", "url", "keywords"],
        ["예시 채널", feed, "립스틱, lipstick"],
        ["no feed yet", "", ""],
    ]
    config = SheetChannelsConfig(
        spreadsheet_key="sheet-1", access_token=SHEETS_TOKEN, base_url=sheets_server.url, max_age_days=None
    )
    items = SheetChannelsSource(config, sleep=lambda s: None).discover()
    assert [i.item_id for i in items] == ["AbCdEfGhIj0"]  # keyword filter from the row; Shorts skipped


def test_text_stays_text_and_numbers_stay_numbers(sheets_server, store):
    """Finding 9: with USER_ENTERED, "= aes" became a formula and an all-digit id a number (the
    server parses USER_ENTERED input as Sheets does); RAW keeps them as text."""
    from .servers import Formula

    rec = {
        "id": "00123",
        "video_id": "0987654321",
        "status": "needs_review",
        "product_name": "= aes",
        "brand": "+1 브랜드",
        "score": 72,
        "ppl_probability": 0.25,
        "start": 4.0,
        "end": 14.0,
    }
    assert sink(sheets_server).write("candidates", [rec]) == 1
    row = sheets_server.sheets["sheet-1"]["Review"][1]
    assert row[0] == "00123" and row[1] == "0987654321"
    assert row[3] == "= aes" and not isinstance(row[3], Formula)
    assert row[4] == "+1 브랜드"
    assert row[8] == 72 and isinstance(row[8], int)
    assert row[10] == 0.25 and row[6] == 4.0
