"""The ``[video]`` section of stageflow.toml: which backends run, their option tables
(``[video.<backend>]``), frame sampling and clip options, and ``--set KEY=VALUE`` overrides.

Backend option tables are validated by the backend's own config model when it is built; this module
only checks that they are tables. Never builds a backend.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stageflow.backend_refs import BackendRef
from stageflow.errors import ConfigError


class SamplingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval_s: float = Field(1.0, gt=0)
    min_sharpness: float = 30.0
    min_hash_distance: int = 10
    min_scene_diff: float = 6.0
    max_side: int = 1280
    batch_size: int = Field(16, ge=1)
    # a static shot keeps a frame this often while it shows text or objects (0: scene changes only)
    evidence_interval_s: float = Field(2.0, ge=0)


class ClipOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    padding_s: float = Field(1.5, ge=0)
    vertical: bool = False  # 9:16 centre crop
    height: int = 1280  # output height of a vertical clip (width = height * 9 / 16)


class SinkChoice(BaseModel):
    """An extra sink for the candidates (the sqlite store is always written): ``{backend, options}``."""

    model_config = ConfigDict(extra="forbid")
    backend: Annotated[str, BackendRef("sinks")]
    options: dict[str, Any] = Field(default_factory=dict)


#: Keys of [video] that only part 2 (analysis, commerce, sinks) reads: they never invalidate a stored
#: part-1 result.
ANALYSIS_KEYS = (
    "analyzer", "commerce", "sinks", "ppl_patterns", "channel", "channels", "commerce_limit",
    "review_in_ui", "review_timeout_s", "review_poll_s",
)  # fmt: skip


#: Keys of [video] that say only how the media reaches the inference child: they never invalidate a
#: stored part-1 result either.
TRANSPORT_KEYS = ("job_storage", "job_storage_options", "job_storage_keep")


class ChannelOptions(BaseModel):
    """``[video.channels."<channel id>"]``: what is known about one channel; each key, when set, wins
    over what the store computed from its feed (``subscribers`` is only known from here or the sheet)."""

    model_config = ConfigDict(extra="forbid")
    subscribers: int | None = Field(None, ge=0)
    engagement_rate: float | None = Field(None, ge=0)
    consistency: float | None = Field(None, ge=0, le=1)
    authenticity: float | None = Field(None, ge=0, le=1)
    language: str | None = None  # what the channel speaks (Whisper's language code, e.g. "ko")


class VideoConfig(BaseModel):
    """``transcriber``/``detector``: a backend name, or "" to skip that stage; ``ocr``: zero or more
    engines whose results are merged; ``analyzer``: the part-2 analyzer (options in
    ``[video.<analyzer>]``); ``commerce``: commerce backends tried in order, first match wins (a
    name, a list, or "" for none; options in ``[video.<name>]`` each); ``sinks``: extra sinks for
    the candidates. Any other key must be a table of backend options."""

    model_config = ConfigDict(extra="allow")
    transcriber: Annotated[str, BackendRef("transcribers")] = "faster-whisper"
    detector: Annotated[str, BackendRef("detectors")] = "ultralytics"
    ocr: list[Annotated[str, BackendRef("ocr_engines")]] = Field(default_factory=lambda: ["rapidocr"])
    # OCR engines read the crops of text boxes that rapidocr's detector finds once per frame (false:
    # each engine reads whole frames)
    ocr_regions: bool = True
    analyzer: Annotated[str, BackendRef("analyzers")] = "rules"
    # commerce backends tried in order, the first match wins, e.g. "coupang" or ["coupang", "other"];
    # "" or [] -> no commerce (every candidate routes to no_commerce_match); a miss of all of them too
    commerce: list[Annotated[str, BackendRef("commerce")]] = Field(default_factory=list)
    commerce_limit: int = Field(10, ge=1)  # search results considered per keyword variant
    sinks: list[SinkChoice] = Field(default_factory=list)
    ppl_patterns: str | None = None  # a PPL pattern TOML file (default: the packaged one)
    channel: dict[str, float | int] = Field(default_factory=dict)  # default influencer stats for scoring
    channels: dict[str, ChannelOptions] = Field(default_factory=dict)  # per channel id, over the store's
    # Review in the Prefect UI: after the candidates are stored, the flow run pauses with a form for the
    # ones in needs_review (off by default, so a scheduled run never blocks); without an answer within
    # review_timeout_s the run completes and they stay needs_review.
    review_in_ui: bool = False
    review_timeout_s: int = Field(3600, ge=1)
    review_poll_s: int = Field(10, ge=1)  # how often the paused run checks for the answer
    # "" runs the inference child in-process; "video-inference/video-inference" runs that deployment
    # (the GPU pool) with run_deployment and reads its result from the job directory.
    inference_deployment: str = ""
    inference_timeout_s: float = Field(3600.0, gt=0)
    # Where the deployed child finds the job (stageflow.video.jobstore): "" -> the job directory
    # itself, on a volume both pools see; an fsspec URL (s3://bucket/jobs, sftp://user@host/srv/jobs,
    # gs://..., file:///mnt/jobs) -> the parent uploads the media there and the child writes its
    # result back. Options go to the fsspec file system; they travel in the run parameters, so
    # secrets only by environment variable name (password_env = "VAR").
    job_storage: str = ""
    job_storage_options: dict[str, Any] = Field(default_factory=dict)
    job_storage_keep: bool = False  # keep the remote job directory after the result is read
    language: str | None = None
    sampling: SamplingOptions = Field(default_factory=SamplingOptions)
    clips: ClipOptions = Field(default_factory=ClipOptions)

    @field_validator("ocr", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("commerce", mode="before")
    @classmethod
    def _commerce_one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value] if value.strip() else []
        return value

    @field_validator("commerce")
    @classmethod
    def _commerce_once_each(cls, value: list[str]) -> list[str]:
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"commerce backend '{twice[0]}' is listed twice")
        return [name for name in value if name.strip()]

    @model_validator(mode="after")
    def _tables_only(self) -> VideoConfig:
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ValueError(
                    f"unknown key '{key}' (known: transcriber, detector, ocr, ocr_regions, analyzer, "
                    "commerce, commerce_limit, sinks, ppl_patterns, channel, channels, review_in_ui, "
                    "review_timeout_s, review_poll_s, inference_deployment, inference_timeout_s, "
                    "job_storage, job_storage_options, job_storage_keep, language, sampling, clips, or a "
                    "[video.<backend>] table)"
                )
        return self

    @field_validator("job_storage")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        if value.strip():
            from stageflow.video.jobstore import url_problem

            problem = url_problem(value.strip())
            if problem:
                raise ValueError(problem)
        return value.strip()

    @field_validator("job_storage_options")
    @classmethod
    def _no_clear_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        from stageflow.video.jobstore import secret_keys

        found = secret_keys(value)
        if found:
            raise ValueError(
                f"{found[0]}: a secret here would travel in the run parameters; set {found[0]}_env = "
                "NAME (an environment variable on each worker) or use the backend's own variables (AWS_*)"
            )
        return value

    @field_validator("analyzer")
    @classmethod
    def _analyzer_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("analyzer must name a backend (e.g. rules)")
        return value

    def options(self, backend: str) -> dict[str, Any]:
        """The ``[video.<backend>]`` table (empty when absent)."""
        return dict((self.model_extra or {}).get(backend, {}))


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(config: VideoConfig, overrides: Iterable[str], **choices: Any) -> VideoConfig:
    """A new config with ``KEY=VALUE`` overrides (dotted keys: ``faster-whisper.language=ko``,
    ``sampling.interval_s=2``; values parsed as TOML, else taken as strings) and non-None choices."""
    data = config.model_dump()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected KEY=VALUE (e.g. faster-whisper.language=ko)")
        parts = [p.strip() for p in key.split(".")]
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item}: '{part}' is not a table")
            node = child
        node[parts[-1]] = _parse_value(raw.strip())
    for key, value in choices.items():
        if value is not None:
            data[key] = value
    try:
        return VideoConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "video"
        raise ConfigError(f"[video] {where}: {first['msg']}") from None
