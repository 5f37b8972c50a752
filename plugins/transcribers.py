"""Built-in transcriber ``faster-whisper``: VAD on, word timestamps, device and compute type automatic
(cuda + float16 when a GPU is present, else cpu + int8), BatchedInferencePipeline on GPU.

Tuned for real speech: faster-whisper's temperature fallback (a window whose text repeats itself or
has a low log-probability is decoded again at a higher temperature; a single ``temperature = 0.0``
turns that off, and on Korean speech gave one 40 s "요, 요, 요…" segment) and
``condition_on_previous_text = False`` (a loop in one window cannot seed the next).

Segment starts land on the speech: with VAD on, faster-whisper decodes the speech chunks joined,
each padded by 400 ms of its silence, and Whisper often starts a segment where the previous one
ended, i.e. in the ~0.8 s of joined padding (on espeak-ng Korean a segment started 0.82 s before
its speech). A segment (and its first words) that starts in silence before a speech region that it
reaches is moved to where that region's speech starts (the same VAD, unpadded).

Imports faster_whisper only inside the backend; a model is a local directory, or a name fetched by
faster-whisper only when downloads are allowed (STAGEFLOW_ALLOW_DOWNLOADS=1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from stageflow.api import Register, Segment, Transcript, Word, hookimpl


class FasterWhisperConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "small"
    language: str | None = None  # None: detected
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "auto"  # auto: float16 on cuda, int8 on cpu
    vad: bool = True
    word_timestamps: bool = True
    beam_size: int = 5
    # faster-whisper's own default: the fallback schedule
    temperature: float | list[float] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    condition_on_previous_text: bool = False
    batch_size: int = 8  # BatchedInferencePipeline (GPU only)
    max_new_tokens: int | None = None
    cpu_threads: int = 0


class FasterWhisperTranscriber:
    def __init__(self, config: FasterWhisperConfig):
        from stageflow.video.offline import MODELS, auto_device, local_model, prepare_hf

        prepare_hf()
        local = local_model(config.model, backend="faster-whisper", option="model", looks_like_path=False)
        if local is not None and not (local / "model.bin").is_file():
            from stageflow.video.offline import ModelNotFound

            raise ModelNotFound(
                f"faster-whisper: {local} is not a CTranslate2 Whisper model directory (no model.bin): "
                "convert one with ct2-transformers-converter or give another path"
            )
        self.config = config
        self.device = auto_device() if config.device == "auto" else config.device
        compute = config.compute_type
        if compute == "auto":
            compute = "float16" if self.device == "cuda" else "int8"
        self.compute_type = compute
        key = f"{local or config.model}|{self.device}|{compute}|{config.cpu_threads}"
        self.model = MODELS.get("faster-whisper", key, lambda: self._load(str(local or config.model)))

    def _load(self, model: str) -> Any:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        try:
            whisper = WhisperModel(
                model, device=self.device, compute_type=self.compute_type, cpu_threads=self.config.cpu_threads
            )
        except Exception as exc:  # faster-whisper raises plain errors for a bad model dir
            from stageflow.video.offline import ModelNotFound

            raise ModelNotFound(f"faster-whisper: cannot load model {model}: {exc}") from None
        return BatchedInferencePipeline(whisper) if self.device == "cuda" else whisper

    def transcribe(self, audio: Any, language: str | None = None) -> Transcript:
        import numpy as np

        samples = np.asarray(audio, dtype=np.float32)
        duration = round(len(samples) / 16000, 3)
        if samples.size == 0:
            return Transcript(language=language or self.config.language, duration_s=0.0)
        cfg = self.config
        kwargs: dict[str, Any] = {
            "language": language or cfg.language,
            "vad_filter": cfg.vad,
            "word_timestamps": cfg.word_timestamps,
            "beam_size": cfg.beam_size,
            "temperature": cfg.temperature,
            "condition_on_previous_text": cfg.condition_on_previous_text,
        }
        if cfg.max_new_tokens is not None:
            kwargs["max_new_tokens"] = cfg.max_new_tokens
        if self.device == "cuda":
            kwargs["batch_size"] = cfg.batch_size
            kwargs.pop("condition_on_previous_text")
        segments, info = self.model.transcribe(samples, **kwargs)
        regions = speech_regions(samples) if cfg.vad else []
        out = []
        for seg in segments:
            end = min(float(seg.end), duration)
            start = min(float(seg.start), end)
            words = tuple(
                Word(
                    start=round(min(float(w.start), duration), 3),
                    end=round(min(float(w.end), duration), 3),
                    text=w.word,
                    probability=round(float(w.probability), 4),
                )
                for w in (seg.words or ())
            )
            out.append(
                snap_to_speech(
                    Segment(start=round(start, 3), end=round(end, 3), text=seg.text.strip(), words=words),
                    regions,
                )
            )
        out.sort(key=lambda seg: (seg.start, seg.end))  # batched/VAD chunks may arrive out of order
        return Transcript(language=info.language, duration_s=duration, segments=tuple(out))


def speech_regions(samples: Any, rate: int = 16000) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of each speech region by faster-whisper's VAD (silero, its default
    options) without the padding it adds before decoding."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return [
        (c["start"] / rate, c["end"] / rate)
        for c in get_speech_timestamps(samples, VadOptions(speech_pad_ms=0), sampling_rate=rate)
    ]


def snap_to_speech(seg: Segment, regions: Sequence[tuple[float, float]]) -> Segment:
    """``seg`` with its start moved to the start of the first speech region it reaches, when it
    starts in the silence before that region; so are its words that start there (each at most to its
    own end). A segment that starts inside speech, or reaches no region, is returned as it is."""
    region = next((r for r in regions if r[1] > seg.start), None)
    if region is None or not seg.start < region[0] < seg.end:
        return seg
    onset = round(region[0], 3)
    words = tuple(replace(w, start=min(onset, w.end)) if w.start < onset else w for w in seg.words)
    return replace(seg, start=onset, words=words)


@hookimpl
def register_transcribers(register: Register) -> None:
    register(
        "faster-whisper",
        FasterWhisperTranscriber,
        config=FasterWhisperConfig,
        requires=("faster_whisper",),
        extra="video",
        description="Whisper via CTranslate2: VAD, word timestamps, int8 on CPU, batched float16 on GPU",
    )
