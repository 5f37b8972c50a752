"""The analysis engine and ``stageflow analyze``: the --json shape, per-video error isolation for
every bad input, dedup by content, batched (bounded) frame processing, one-line CLI errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stageflow.plugin_manager import get_plugin_manager
from stageflow.store import open_store
from stageflow.video import pipeline as analyze
from stageflow.video.settings import VideoConfig, apply_overrides

KEYS = [
    "id",
    "input",
    "source",
    "title",
    "duration_s",
    "frames_decoded",
    "frames_kept",
    "transcript",
    "detections",
    "ocr",
    "texts",
    "candidates",
    "error",
    "timings_s",
    "skipped",
]


@pytest.fixture
def cli_app():
    from stageflow import cli
    from stageflow.commands import video

    if not any(c.name == "analyze" for c in cli.app.registered_commands):
        video.register(cli.app)
    return cli


@pytest.fixture
def project(tmp_path: Path, video_settings: dict) -> Path:
    """A stageflow.toml with the tiny models (OCR: rapidocr; detector at its default confidence)."""
    fw, ul = video_settings["faster-whisper"], video_settings["ultralytics"]
    path = tmp_path / "stageflow.toml"
    path.write_text(
        f"""[video]
language = "en"
ocr = ["rapidocr"]
[video.sampling]
batch_size = 2
[video.faster-whisper]
model = "{fw["model"]}"
beam_size = 1
cpu_threads = 1
[video.ultralytics]
model = "{ul["model"]}"
imgsz = 320
""",
        encoding="utf-8",
    )
    return path


def _ctx(video_settings, out: Path, store=None, on_stage=None) -> analyze.AnalyzeContext:
    plugins = get_plugin_manager()
    config = VideoConfig.model_validate(video_settings)
    return analyze.AnalyzeContext(
        plugins, config, analyze.build_backends(plugins, config), out, store, on_stage=on_stage
    )


def test_one_bad_video_never_stops_the_others(media, video_settings, tmp_path):
    inputs = [media.truncated, media.talk, media.empty, media.unsupported, media.silent, media.audio_only]
    ctx = _ctx(video_settings, tmp_path / "out")
    doc = analyze.analyze(analyze.resolve_inputs([str(p) for p in inputs], ctx.plugins), ctx)
    videos = {Path(v["input"]).stem: v for v in doc["videos"]}
    assert [list(v) for v in doc["videos"]] == [KEYS] * 6
    assert "corrupt or truncated" in videos["truncated"]["error"]
    assert videos["empty"]["error"].endswith("empty file (0 bytes)")
    assert "unsupported container '.avi'" in videos["clip"]["error"]
    for name in ("truncated", "empty", "clip"):
        assert videos[name]["transcript"] == videos[name]["ocr"] == [] and videos[name]["frames_decoded"] == 0

    talk = videos["talk"]
    assert talk["error"] is None and talk["duration_s"] == pytest.approx(6.0, abs=0.2)
    assert (talk["frames_decoded"], talk["frames_kept"]) == (60, 3)
    assert [(o["t"], o["text"]) for o in talk["ocr"]] == [(0.0, "HELLO"), (2.5, "DISCOUNT"), (4.5, "THANKS")]
    assert talk["transcript"] and all(
        0 <= s["start"] <= s["end"] <= talk["duration_s"] for s in talk["transcript"]
    )
    assert all(d["t"] in (0.0, 2.5, 4.5) for d in talk["detections"])
    assert talk["candidates"] == []

    silent = videos["silent"]  # no audio track: frames only, not an error
    assert silent["error"] is None and silent["transcript"] == []
    assert {o["text"] for o in silent["ocr"]} == {"SILENT"}  # scene frame + a steady frame at 2 s
    assert [(x["text"], x["first_t"], x["last_t"]) for x in silent["texts"]] == [("SILENT", 0.0, 2.0)]
    only = videos["audio_only"]  # no video track: transcript only
    assert only["error"] is None and only["frames_decoded"] == only["frames_kept"] == 0
    assert only["ocr"] == only["detections"] == [] and only["transcript"]


def test_frames_are_processed_in_bounded_batches(media, video_settings, tmp_path):
    ctx = _ctx(video_settings, tmp_path / "out")  # sampling.batch_size = 2
    [ref] = analyze.resolve_inputs([str(media.talk)], ctx.plugins)
    analyze.analyze_video(ref, ctx)
    [result] = (tmp_path / "out" / "jobs").glob("*/result.json")
    inference = json.loads(result.read_text())["inference"]
    assert (inference["batches"], inference["max_batch"]) == (2, 2)  # 3 kept frames, never more than 2 loaded


def test_a_processed_video_is_skipped_by_content(media, video_settings, tmp_path):
    stages: list[str] = []
    store = open_store()
    try:
        ctx = _ctx(video_settings, tmp_path / "out", store, lambda n, t, vid, stage: stages.append(stage))
        copy = tmp_path / "renamed.mp4"
        shutil.copyfile(media.silent, copy)
        first = analyze.analyze(analyze.resolve_inputs([str(media.silent)], ctx.plugins), ctx)
        again = analyze.analyze(analyze.resolve_inputs([str(media.silent)], ctx.plugins), ctx)
        other = analyze.analyze(analyze.resolve_inputs([str(copy)], ctx.plugins), ctx)
    finally:
        store.close()

    def untimed(doc):
        return [{k: v for k, v in video.items() if k != "timings_s"} for video in doc["videos"]]

    assert untimed(again) == untimed(first)
    # the id is the content's: a renamed copy is the same video, answered from the store
    assert stages.count("decode") == 1 and stages.count("cached") == 2
    assert other["videos"][0]["id"] == first["videos"][0]["id"]
    assert other["videos"][0]["input"] == str(copy) and other["videos"][0]["ocr"] == first["videos"][0]["ocr"]
    assert set(first["videos"][0]["timings_s"]) == {"fetch", "decode", "transcribe", "look"}


def test_two_files_with_one_name_get_two_ids(media, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copyfile(media.silent, tmp_path / "a" / "clip.mp4")
    shutil.copyfile(media.talk, tmp_path / "b" / "clip.mp4")
    refs = analyze.resolve_inputs([str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "clip.mp4")], None)
    assert len({r.id for r in refs}) == 2 and all(r.id.startswith("file:") for r in refs)


def test_page_urls_are_single_videos():
    refs = analyze.resolve_inputs(
        ["https://www.youtube.com/watch?v=AAA", "https://cdn.example/live/index.m3u8"], None
    )
    assert [(r.id, r.source) for r in refs] == [
        ("url:https://www.youtube.com/watch?v=AAA", "url"),
        ("url:https://cdn.example/live/index.m3u8", "url"),
    ]


def test_overrides_and_config_errors():
    from stageflow.errors import ConfigError

    cfg = apply_overrides(
        VideoConfig(), ["faster-whisper.language=ko", "sampling.interval_s=2"], ocr=["tesseract"]
    )
    assert cfg.options("faster-whisper") == {"language": "ko"} and cfg.sampling.interval_s == 2.0
    assert cfg.ocr == ["tesseract"]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(VideoConfig(), ["nonsense"])
    with pytest.raises(ConfigError, match="unknown key 'transcribr'"):
        apply_overrides(VideoConfig(), ["transcribr=x"])


def test_cli_json_reports_failures_and_exits_1(cli_app, media, project, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_app.main(
            [
                "analyze",
                str(media.silent),
                str(media.empty),
                "--json",
                "-c",
                str(project),
                "--out",
                str(tmp_path / "out"),
                "--detector",
                "",
            ]
        )
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert [v["error"] is None for v in doc["videos"]] == [True, False]
    assert doc["videos"][0]["detections"] == []  # --detector "" skips the stage
    last = captured.err.strip().splitlines()[-1]
    assert (
        last.startswith("stageflow: error: 1 of 2 videos failed; first: ")
        and "empty.mp4: " in last
        and "Traceback" not in captured.err
    )


def test_cli_missing_model_is_one_line_exit_2(cli_app, media, project, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_app.main(
            [
                "analyze",
                str(media.silent),
                "-c",
                str(project),
                "--set",
                f"ultralytics.model={tmp_path / 'gone.pt'}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gone.pt does not exist" in err[0]


def test_cli_success_exits_0(cli_app, media, project, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_app.main(
            [
                "analyze",
                str(media.audio_only),
                "-c",
                str(project),
                "--out",
                str(tmp_path / "o"),
                "--ocr",
                "tesseract",
            ]
        )
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "audio_only.mp4 [file:" in out and "frames 0/0 kept" in out and "decode " in out


def test_spoken_language_channel_file_over_channel_table_over_video_default(tmp_path):
    from stageflow.video.pipeline.inputs import VideoRef, _channels, spoken_language
    from stageflow.video.settings import VideoConfig

    chans = tmp_path / "channels.toml"
    chans.write_text(
        '[[channel]]\nfeed = "https://example.invalid/f.xml"\nlanguage = "ko"\n', encoding="utf-8"
    )
    assert _channels(chans)[0]["language"] == "ko"
    config = VideoConfig.model_validate({"language": "en", "channels": {"UCkr": {"language": "ja"}}})
    ref = VideoRef(id="rss:1", source="rss", title="t", location="x.mp4", channel="UCkr")
    assert spoken_language(ref, config) == "ja"
    assert (
        spoken_language(
            VideoRef(id="rss:1", source="rss", title="t", location="x.mp4", channel="UCkr", language="ko"),
            config,
        )
        == "ko"
    )
    assert spoken_language(VideoRef(id="f", source="file", title="t", location="x.mp4"), config) == "en"
    assert (
        spoken_language(VideoRef(id="f", source="file", title="t", location="x.mp4"), VideoConfig()) is None
    )


def test_a_bit_flipped_mp4_fails_with_one_line_and_the_next_video_runs(media, video_settings, tmp_path):
    """Issue 15 item 13: a corrupt (bit-flipped) mp4 gave ``AttributeError: 'NoneType' object has no
    attribute 'width'``; now one line naming the file, and the other video is analysed."""
    import random

    from stageflow.video import synthetic as s

    clip = s.make_video(tmp_path / "ok.mp4", [s.Scene(1.0, "HELLO"), s.Scene(1.0, "BYE")])
    data = bytearray(clip.read_bytes())
    rng = random.Random(13)
    for i in range(len(data)):
        if rng.random() < 0.02:
            data[i] ^= 1 << rng.randrange(8)
    flipped = tmp_path / "flipped.mp4"
    flipped.write_bytes(bytes(data))
    ctx = _ctx(video_settings, tmp_path / "out")
    bad, good = analyze.analyze(analyze.resolve_inputs([str(flipped), str(media.silent)], ctx.plugins), ctx)[
        "videos"
    ]
    assert bad["error"].startswith(f"{flipped}: ") and "\n" not in bad["error"]
    assert "AttributeError" not in bad["error"] and "corrupt" in bad["error"]
    assert good["error"] is None and good["ocr"]


def test_shorts_filter_uses_the_fetched_videos_duration(media, video_settings, tmp_path):
    """A feed entry without a duration (issue 13 item 3): the Shorts filter decides on the fetched
    file's duration (yt-dlp's metadata, else probed): a 2 s video from a feed that skips Shorts is
    skipped, not analysed and not a failure; the same video from a feed that keeps Shorts is analysed."""
    ctx = _ctx(video_settings, tmp_path / "out")
    ref = analyze.VideoRef(id="rss:s1", source="rss", title="s", location=str(media.silent), skip_shorts=True)
    [short] = analyze.analyze([ref], ctx)["videos"]
    assert short["error"] is None and short["skipped"].startswith("a Short (")
    assert short["frames_decoded"] == 0 and short["ocr"] == [] and short["duration_s"] <= 60
    [kept] = analyze.analyze([ref.model_copy(update={"skip_shorts": False})], ctx)["videos"]
    assert kept["skipped"] is None and kept["ocr"]


def test_fetch_takes_duration_title_and_channel_from_the_downloaders_metadata(
    media, video_settings, tmp_path
):
    """yt-dlp's ``<file>.meta.json`` (what the downloader learnt) fills what the feed lacked: the
    Shorts filter decides on its duration before the file's own probe, and the title and channel come
    from it; what the input already says wins."""
    from stageflow.video.pipeline import steps

    clip = tmp_path / "v.mp4"
    shutil.copyfile(media.silent, clip)  # a 2 s file ...
    meta = {"title": "Long review", "channel_id": "UCabc", "duration_s": 600.0}
    (tmp_path / "v.mp4.meta.json").write_text(json.dumps(meta))  # ... that its metadata says is 10 min
    ref = analyze.VideoRef(id="rss:m1", source="rss", title=str(clip), location=str(clip), skip_shorts=True)
    config = VideoConfig.model_validate(video_settings)
    got = steps.fetch(ref, config, str(tmp_path / "out"))
    assert (got.duration_s, got.short) == (600.0, False)
    assert (got.ref.title, got.ref.channel) == ("Long review", "UCabc")
    meta["duration_s"] = 30.0
    (tmp_path / "v.mp4.meta.json").write_text(json.dumps(meta))
    assert steps.fetch(ref, config, str(tmp_path / "out")).short is True
    named = ref.model_copy(update={"title": "Feed title", "channel": "UCfeed", "duration_s": 900.0})
    kept = steps.fetch(named, config, str(tmp_path / "out"))
    assert (kept.ref.title, kept.ref.channel, kept.duration_s, kept.short) == (
        "Feed title",
        "UCfeed",
        900.0,
        False,
    )


def test_tty_progress_has_a_bar_per_stage_that_counts_finished_videos():
    from stageflow.commands.video import STAGES, StageProgress

    progress = StageProgress(tty=True)
    try:
        for vid in ("a", "b"):
            for stage in ("fetch", "decode", "transcribe", "look", "done"):
                progress(1, 2, vid, stage)
        progress(2, 2, "c", "fetch")
        counts = {t.description: t.completed for t in progress.bar.tasks}
    finally:
        progress.close()
    assert list(counts) == list(STAGES)
    assert counts == {"fetch": 2, "decode": 2, "transcribe": 2, "look": 2, "analyze": 0}
