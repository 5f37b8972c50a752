"""CLI commands of the video-analysis family: ``stageflow analyze``.

Thin: resolves the config, then runs :mod:`stageflow.video.pipeline.run` in-process (imported inside
the command so ``stageflow --help`` stays fast) or, with ``--prefect``, the video-analysis flow,
which wraps the same steps as tasks. The JSON
document goes to stdout, progress and per-video failures to stderr. Never prints a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

STAGES = ("fetch", "decode", "transcribe", "look", "analyze")


class StageProgress:
    """On a TTY stderr, a rich progress bar per stage (fetch, decode, transcribe, look, analyze), each
    counting the videos that finished it and naming the one in it; else one line per video."""

    def __init__(self, total: int = 0, *, tty: bool | None = None) -> None:
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}
        self.current: dict[str, str] = {}  # video id -> its running stage
        if sys.stderr.isatty() if tty is None else tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description:>10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[video]}"),
                console=Console(stderr=True),
            )
            for name in STAGES:
                self.tasks[name] = self.bar.add_task(name, total=total or None, video="")
            self.bar.start()

    def __call__(self, number: int, total: int, video_id: str, stage: str) -> None:
        if self.bar is None:
            if stage in ("done", "failed", "cached", "skipped"):
                typer.echo(f"[{number}/{total}] {video_id[:40]}: {stage}", err=True)
            return
        previous = self.current.pop(video_id, None)
        if previous in self.tasks:  # the video finished its previous stage
            self.bar.update(self.tasks[previous], advance=1, video="")
        if stage in self.tasks:
            self.current[video_id] = stage
            self.bar.update(self.tasks[stage], total=total, video=f"[{number}/{total}] {video_id[:40]}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def analyze_cmd(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Video files, folders, feed URLs or files (.xml/.rss/.atom), channels files (.toml with "
            "[[channel]] feed=...), or direct media URLs."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", file_okay=False, help="Job dirs, results (default: $STAGEFLOW_HOME/video)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", dir_okay=False, help="Project file (default: ./stageflow.toml)."),
    ] = None,
    transcriber: Annotated[
        str | None, typer.Option("--transcriber", help="Transcriber backend ('' to skip speech).")
    ] = None,
    detector: Annotated[
        str | None, typer.Option("--detector", help="Detector backend ('' to skip objects).")
    ] = None,
    ocr: Annotated[
        list[str] | None, typer.Option("--ocr", help="OCR engine; repeat for several (results merged).")
    ] = None,
    analyzer: Annotated[
        str | None, typer.Option("--analyzer", help="Product-candidate analyzer (rules, gemini).")
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a [video] key: KEY=VALUE, e.g. faster-whisper.language=ko."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-analyse videos already in the store.")] = False,
    prefect: Annotated[
        bool, typer.Option("--prefect", help="Run as the video_analysis Prefect flow.")
    ] = False,
) -> None:
    """Transcribe, detect objects and read on-screen text in videos, then find product candidates (with
    reel clips, scores, commerce links) into the store and the configured sinks; one summary
    notification per run. One bad video never stops the rest."""
    from stageflow import settings as sf_settings
    from stageflow.config import load_config
    from stageflow.errors import JobFailed
    from stageflow.video.settings import apply_overrides

    project = load_config(config)
    ocr_choice = [o for o in ocr if o] if ocr is not None else None
    video_config = apply_overrides(
        project.video,
        settings or [],
        transcriber=transcriber,
        detector=detector,
        ocr=ocr_choice,
        analyzer=analyzer,
    )
    out_dir = (out or sf_settings.home() / "video").expanduser()
    if prefect:
        from stageflow.flows.video import AnalysisParams, video_analysis

        state = video_analysis(
            AnalysisParams(
                inputs=list(inputs),
                out=str(out_dir),
                video=video_config.model_dump(),
                force=force,
                notifier=project.notify.backend,
                notifier_options=project.notify.options,
            ),
            return_state=True,
        )
        # every video failed: the run is Failed and carries the document; it is printed the same way
        doc = state.result(raise_on_failure=False)
        if isinstance(doc, BaseException):
            raise doc
    else:
        doc = run_analysis(
            list(inputs),
            video_config,
            out_dir,
            force=force,
            notifier=project.notify.backend,
            notifier_options=project.notify.options,
        )
    output_errors = doc.pop("sink_errors", None) or []
    _print(doc, as_json=as_json)
    for err in output_errors:
        typer.echo(f"stageflow: {err}", err=True)
    failed = [v for v in doc["videos"] if v["error"]]
    if failed:
        first = failed[0]
        raise JobFailed(
            f"{len(failed)} of {len(doc['videos'])} videos failed; first: {_name(first)}: {first['error']}"
        )
    if output_errors:
        raise JobFailed(f"{len(output_errors)} output(s) failed; first: {output_errors[0]}")


def run_analysis(
    inputs: list[str],
    config: Any,
    out_dir: Path,
    *,
    force: bool = False,
    notifier: str = "log",
    notifier_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pipeline in this process (what ``stageflow analyze`` does by default), with per-stage
    progress on stderr."""
    from stageflow.video.pipeline.run import run_analysis as run

    progress = StageProgress()
    try:
        return run(
            inputs,
            config,
            out_dir,
            force=force,
            notifier=notifier,
            notifier_options=notifier_options,
            on_stage=progress,
        )
    finally:
        progress.close()


def _name(video: dict[str, Any]) -> str:
    """How a user named the video: its input path or URL (the id when there is none)."""
    return str(video.get("input") or video["id"])


def _print(doc: dict[str, Any], *, as_json: bool) -> None:
    for v in doc["videos"]:
        if v["error"]:
            typer.echo(f"stageflow: {_name(v)}: {v['error']}", err=True)
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return
    for v in doc["videos"]:
        if v["error"]:
            typer.echo(f"{_name(v)}: FAILED ({v['error']})")
            continue
        if v.get("skipped"):
            typer.echo(f"{_name(v)}: skipped ({v['skipped']})")
            continue
        timings = ", ".join(f"{k} {t:.1f} s" for k, t in (v.get("timings_s") or {}).items())
        typer.echo(
            f"{_name(v)} [{v['id']}]: {v['title']!r} {v['duration_s']} s, "
            f"frames {v['frames_kept']}/{v['frames_decoded']} kept, "
            f"{len(v['transcript'])} segments, {len(v['detections'])} detections, "
            f"{len(v.get('texts') or v['ocr'])} texts, {len(v['candidates'])} candidates"
            + (f" ({timings})" if timings else "")
        )


def register(app: typer.Typer) -> None:
    """Add this family's commands to the root app."""
    app.command("analyze")(analyze_cmd)
