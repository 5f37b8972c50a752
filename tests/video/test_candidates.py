"""Part 2 wired into ``stageflow analyze``: a generated video whose on-screen text names a product
yields a candidate (rules analyzer, exact item-9 fields) with a reel clip and a thumbnail inside the
video's timeline, stored once however often the video is analysed; extra sinks; an analysis failure
in one video sets its error while the next video still gets candidates; unknown analyzer / sink
names fail before any video with exit 2 and one line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from stageflow.plugin_manager import get_plugin_manager
from stageflow.store import open_store
from stageflow.video import pipeline as analyze
from stageflow.video.settings import VideoConfig
from stageflow.video.store import VideoStore

FIELDS = [
    "id", "product_name", "brand", "category_path", "start", "end", "evidence", "score", "score_band",
    "ppl_probability", "status", "commerce", "clip", "thumbnail",
]  # fmt: skip


def _servers():
    path = Path(__file__).resolve().parents[1] / "analysis" / "servers.py"
    spec = importlib.util.spec_from_file_location("analysis_servers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cli_app():
    from stageflow import cli
    from stageflow.commands import video

    if not any(c.name == "analyze" for c in cli.app.registered_commands):
        video.register(cli.app)
    return cli


@pytest.fixture(scope="module")
def product_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stageflow.video import synthetic as s

    root = tmp_path_factory.mktemp("product")
    return s.make_video(
        root / "review.mp4",
        [
            s.Scene(2.0, "HELLO"),
            s.Scene(2.0, "LOGITECH MX MASTER", (255, 255, 200)),
            s.Scene(2.0, "THANKS", (200, 230, 255)),
        ],
        size=(640, 360),
        audio=s.speech_track("hello there, have a look at this", 6),
    )


def _project(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "stageflow.toml"
    path.write_text(
        f'[video]\ntranscriber = ""\ndetector = ""\nocr = ["rapidocr"]\n{extra}', encoding="utf-8"
    )
    return path


def _run(cli_app, capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli_app.main(["analyze", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_cli_yields_candidates_with_clip_and_thumbnail_and_no_duplicates(
    cli_app, capsys, product_video, tmp_path
):
    import av
    from PIL import Image

    export = tmp_path / "export"
    project = _project(tmp_path, f'sinks = [{{backend = "jsonl", options = {{directory = "{export}"}}}}]\n')
    args = [str(product_video), "--json", "-c", str(project), "--out", str(tmp_path / "out")]
    code, out, err = _run(cli_app, capsys, *args)
    assert code == 0, err
    [video] = json.loads(out)["videos"]
    assert video["error"] is None
    [cand] = video["candidates"]
    assert list(cand) == FIELDS
    # on-screen text only (no speech stage): the branded text is the name, never invented
    assert (cand["product_name"], cand["brand"]) == ("LOGITECH MX MASTER", "로지텍")
    assert cand["evidence"]["ocr_texts"][1] == "LOGITECH MX MASTER" and cand["evidence"]["quotes"] == []
    assert cand["commerce"] is None and cand["status"] == "no_commerce_match"  # no commerce configured
    assert 0 <= cand["start"] <= cand["end"] <= video["duration_s"]

    clip, thumb = Path(cand["clip"]), Path(cand["thumbnail"])
    assert clip.is_file() and thumb.is_file()
    with av.open(str(clip)) as c:
        duration = c.duration / av.time_base
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio
    assert 0 < duration <= video["duration_s"] + 0.05  # the range +- padding, clamped to the video
    with Image.open(thumb) as img:
        assert img.format == "JPEG" and img.size == (640, 360)

    code, out, err = _run(cli_app, capsys, *args)  # the same video again: answered from the store
    assert code == 0, err
    assert json.loads(out)["videos"][0]["candidates"] == [cand]
    store = open_store()
    try:
        rows = VideoStore(store).candidates()
        assert [r["id"] for r in rows] == [cand["id"]] and [
            v["video_id"] for v in VideoStore(store).videos()
        ] == [video["id"]]
        history = [h["new_status"] for h in VideoStore(store).status_history(cand["id"])]
        assert history == ["pending", "processing", "analysis_complete", "no_commerce_match"]
    finally:
        store.close()
    assert len(list(clip.parent.iterdir())) == 2  # one clip + one thumbnail, no leftovers
    exported = [json.loads(line) for line in (export / "candidates.jsonl").read_text().splitlines()]
    assert {r["id"] for r in exported} == {cand["id"]} and exported[0]["video_id"] == video["id"]


@pytest.mark.parametrize(
    ("extra", "options", "needle"),
    [
        ("", ["--analyzer", "magic"], "unknown analyzers backend 'magic' (known: gemini, rules)"),
        (
            'analyzer = "magic"\n',
            [],
            "[video] analyzer: unknown analyzers backend 'magic' (known: gemini, rules)",
        ),
        (
            'sinks = [{backend = "excel"}]\n',
            [],
            "unknown sinks backend 'excel' (known: gsheets, jsonl, sqlite)",
        ),
        ('commerce = "amazon"\n', [], "unknown commerce backend 'amazon' (known: coupang)"),
        ('sinks = [{backend = "jsonl", opts = {}}]\n', [], "opts"),
        ("[video.rules]\nmerge_gap = 1\n", [], "option 'merge_gap'"),
        ('commerce = "coupang"\n', [], "coupang: no access key: set COUPANG_ACCESS_KEY"),
    ],
)
def test_bad_analysis_config_fails_before_any_video(
    cli_app, capsys, product_video, tmp_path, monkeypatch, extra, options, needle
):
    monkeypatch.delenv("COUPANG_ACCESS_KEY", raising=False)
    monkeypatch.delenv("COUPANG_SECRET_KEY", raising=False)
    project = _project(tmp_path, extra)
    out_dir = tmp_path / "out"
    code, out, err = _run(
        cli_app, capsys, str(product_video), "-c", str(project), "--out", str(out_dir), *options
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert out == "" and not out_dir.exists()  # nothing decoded


def test_an_analysis_failure_sets_that_videos_error_and_the_next_still_runs(tmp_path):
    servers = _servers()
    record = {
        "id": "vid-a",
        "title": "review",
        "duration_s": 20.0,
        "transcript": [{"start": 0.0, "end": 5.0, "text": "I use this Logitech mouse every day"}],
        "detections": [],
        "ocr": [{"t": 2.0, "text": "Logitech MX Master 3S", "confidence": 0.9}],
        "candidates": [],
        "error": None,
    }
    good = {"product_name": "MX Master 3S", "brand": "로지텍", "category_path": ["디지털", "마우스"],
            "features": [], "hashtags": [], "confidence": 0.8}  # fmt: skip
    with servers.GeminiServer("gm-key", ranges=[{"start": 0, "end": 5}]) as server:
        config = VideoConfig.model_validate(
            {"analyzer": "gemini", "gemini": {"api_key": "gm-key", "base_url": server.url, "backoff_s": 0.01}}
        )
        store = open_store()
        analysis = analyze.build_analysis(get_plugin_manager(), config)
        try:
            server.candidate = {"product_name": 3}  # violates the schema on every attempt
            done = analyze.analyse(_record(record), None, None, config, analysis, store=store)
            first, failed = done.record.to_dict(), done.outcome
            server.candidate = good
            done = analyze.analyse(
                _record({**record, "id": "vid-b"}), None, None, config, analysis, store=store
            )
            second, ok = done.record.to_dict(), done.outcome
        finally:
            analysis.close()
            store.close()
    assert (
        first["error"].startswith("analysis: 1 range(s) failed; first 0.0-5.0s:")
        and first["candidates"] == []
    )
    assert [f[:2] for f in failed.failed] == [(0.0, 5.0)]
    assert second["error"] is None and ok.failed == []
    [cand] = second["candidates"]
    assert (cand["product_name"], cand["status"], cand["clip"]) == (
        "MX Master 3S",
        "no_commerce_match",
        None,
    )
    message = analyze.run_summary([_record(first), _record(second)], [failed, ok])
    assert message.level == "warning" and "vid-a: 0.0-5.0s" in message.text and "MX Master 3S" in message.text
    assert message.fields["failed_ranges"] == "1"
    assert (
        analyze.run_summary([_record(first), _record(second)], [failed, ok]) == message
    )  # same run -> same message (dedup key)


def test_commerce_from_config_links_the_candidate(tmp_path):
    servers = _servers()
    record = {
        "id": "vid-c",
        "title": "desk setup",
        "duration_s": 30.0,
        "transcript": [
            {
                "start": 0.0,
                "end": 5.0,
                "text": "this Logitech MX Master is my favorite mouse, I use it every day",
            },
            {"start": 5.0, "end": 9.0, "text": "Really great! I recommend it, the scroll wheel is amazing!"},
        ],
        "ocr": [{"t": 2.0, "text": "Logitech MX Master 3S", "confidence": 0.9}],
        "candidates": [],
        "error": None,
    }
    catalog = [
        {"productId": 2, "productName": "로지텍 MX Master 3S 무선 마우스", "productPrice": 139000,
         "productImage": "https://img/2.jpg", "productUrl": "https://www.coupang.com/vp/products/2",
         "isRocket": True, "isFreeShipping": True, "categoryName": "마우스"},
    ]  # fmt: skip
    with servers.CoupangServer("ak-1", "sk-1", catalog) as server:
        config = VideoConfig.model_validate(
            {
                "commerce": "coupang",
                "coupang": {"access_key": "ak-1", "secret_key": "sk-1", "base_url": server.url},
                "channel": {"subscribers": 1_000_000, "engagement_rate": 0.05},
            }
        )
        analyze.check_analysis(get_plugin_manager(), config)  # builds the client once, calls nothing
        assert server.requests == []
        store = open_store()
        analysis = analyze.build_analysis(get_plugin_manager(), config)
        try:
            done = analyze.analyse(_record(record), None, None, config, analysis, store=store)
            record, outcome = done.record.to_dict(), done.outcome
        finally:
            analysis.close()
            store.close()
    assert record["error"] is None and outcome.errors == []
    [cand] = record["candidates"]
    assert cand["product_name"] == "Logitech MX Master 3S"
    assert list(cand["commerce"]) == ["product_id", "title", "price", "url", "similarity"]
    assert cand["commerce"]["product_id"] == "2" and cand["commerce"]["url"].startswith(
        "https://link.coupang.com/"
    )
    # matched, so routed by its score instead of no_commerce_match: a genuine recommendation
    # ("my favorite", "every day", "I recommend it") reaches review
    assert cand["score"] >= 60 and cand["status"] == "needs_review"


def test_commerce_backends_own_their_store(monkeypatch):
    """The check builds a Coupang client without opening the store (building opens nothing); the run's
    build readies it (``preflight``: it opens its store in the calling thread) and ``close()`` closes
    what it opened. The pipeline only calls the optional methods, whatever a backend keeps."""
    from stageflow import settings

    config = VideoConfig.model_validate(
        {"commerce": "coupang", "coupang": {"access_key": "ak", "secret_key": "sk", "alerts": False}}
    )
    analyze.check_analysis(get_plugin_manager(), config)
    assert not settings.store_path().exists()  # validate / the check never create the store
    analysis = analyze.build_analysis(get_plugin_manager(), config)
    [client] = analysis.commerce
    assert settings.store_path().exists() and client.store is not None
    opened = client.store
    analysis.close()
    assert client.store is None
    with pytest.raises(Exception, match="closed"):
        opened.count_seen()
    analyze.Analysis(None, [object(), None], None).close()  # no close(): nothing to call


def _record(doc: dict) -> analyze.VideoRecord:
    return analyze.VideoRecord.model_validate(doc)


MOUSE_VIDEO = {
    "id": "vid-m",
    "title": "desk setup",
    "duration_s": 30.0,
    "transcript": [
        {"start": 0.0, "end": 5.0,
         "text": "this Logitech MX Master is my favorite mouse, I use it every day"},
        {"start": 5.0, "end": 9.0, "text": "Really great! I recommend it, the scroll wheel is amazing!"},
    ],
    "ocr": [{"t": 2.0, "text": "Logitech MX Master 3S", "confidence": 0.9}],
    "candidates": [],
    "error": None,
}  # fmt: skip
MOUSE = {
    "productId": 7, "productName": "로지텍 MX Master 3S 무선 마우스", "productPrice": 139000,
    "productImage": "https://img/7.jpg", "productUrl": "https://www.coupang.com/vp/products/7",
    "isRocket": True, "isFreeShipping": True, "categoryName": "마우스",
}  # fmt: skip


class _OtherShop:
    """A second, third-party commerce backend (``other``): Coupang-shaped, so the same loopback server
    answers it; its own [video.other] options."""

    from stageflow.hookspecs import hookimpl

    @staticmethod
    @hookimpl
    def register_commerce(register):
        from stageflow.commerce.coupang import CoupangClient, CoupangConfig

        register("other", CoupangClient, config=CoupangConfig, description="a second shop (test)")


def _analyse_with(config_doc: dict) -> tuple[dict, object]:
    from stageflow.plugin_manager import load_plugins

    plugins = load_plugins(extra_plugins=[("other-shop", _OtherShop)])
    config = VideoConfig.model_validate(config_doc)
    analyze.check_analysis(plugins, config)
    store = open_store()
    analysis = analyze.build_analysis(plugins, config)
    try:
        done = analyze.analyse(_record(MOUSE_VIDEO), None, None, config, analysis, store=store)
    finally:
        analysis.close()
        store.close()
    return done.record.to_dict(), done.outcome


@pytest.mark.parametrize(
    ("coupang_catalog", "coupang_quota", "other_catalog", "winner"),
    [
        ([MOUSE], None, [{**MOUSE, "productId": 8}], "coupang"),  # the first backend wins
        ([], None, [{**MOUSE, "productId": 8}], "other"),  # a miss moves on to the next
        ([MOUSE], 0, [{**MOUSE, "productId": 8}], "other"),  # so does a backend that fails
        ([], None, [], None),  # nobody has it: no_commerce_match
    ],
)
def test_several_commerce_backends_are_tried_in_order(coupang_catalog, coupang_quota, other_catalog, winner):
    servers = _servers()
    with (
        servers.CoupangServer("ak-1", "sk-1", coupang_catalog, search_quota=coupang_quota) as first,
        servers.CoupangServer("ak-2", "sk-2", other_catalog) as second,
    ):
        record, outcome = _analyse_with(
            {
                "commerce": ["coupang", "other"],
                # no store for the clients: both are "coupang"-shaped and would share its cache rows
                "coupang": {"access_key": "ak-1", "secret_key": "sk-1", "base_url": first.url,
                            "use_store": False, "attempts": 1},
                "other": {"access_key": "ak-2", "secret_key": "sk-2", "base_url": second.url,
                          "use_store": False, "alerts": False},
                "channel": {"subscribers": 1_000_000, "engagement_rate": 0.05},
            }
        )  # fmt: skip
        searched_second = any(r.path == second.SEARCH for r in second.requests)
    [cand] = record["candidates"]
    if winner is None:
        assert cand["commerce"] is None and cand["status"] == "no_commerce_match"
        assert searched_second and outcome.errors == []
        return
    assert cand["status"] == "needs_review"
    assert cand["commerce"]["product_id"] == ("7" if winner == "coupang" else "8")
    assert searched_second == (winner == "other")  # the first match ends the search
    if coupang_quota == 0:
        assert len(outcome.errors) == 1 and "commerce for Logitech MX Master 3S" in outcome.errors[0]
    else:
        assert outcome.errors == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("coupang", ["coupang"]), ("", []), ([], []), (["coupang", "other"], ["coupang", "other"])],
)
def test_commerce_is_a_name_or_a_list(value, expected):
    assert VideoConfig.model_validate({"commerce": value}).commerce == expected


def test_commerce_backend_listed_twice_is_refused():
    with pytest.raises(ValueError, match="commerce backend 'coupang' is listed twice"):
        VideoConfig.model_validate({"commerce": ["coupang", "coupang"]})
