"""The ``gemini`` analyzer: Gemini's REST generateContent through httpx, the two passes of the
original (ranges from the transcript, then one candidate per range) with JSON-schema-constrained
output validated by pydantic. Unlike the original, pass b also shows the model the range's kept
frames (a few JPEG inline parts, downscaled), the on-screen text and the detected objects.

Token budget: gemini-2.5 models think before answering and the thinking counts against
``maxOutputTokens``, so every call sends ``thinkingConfig.thinkingBudget`` and a cap of that budget
plus the answer budget of its schema. An answer cut off at MAX_TOKENS (or empty) is asked again once
with a larger cap, then the range fails with a message naming the cap. Invalid JSON, a schema
violation, another finishReason, 429 and 5xx are retried; then the range fails with AnalysisFailed
(the engine records it per range and continues). The API key (config SecretStr,
env GEMINI_API_KEY, or a Prefect Secret block) is sent in a header and never logged or put in errors.
Evidence quotes are taken from the transcript, never from the model.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from stageflow.errors import AnalysisFailed, BadInput, ServiceAuthError
from stageflow.services.resilience import (
    CircuitBreaker,
    Retryable,
    RetryPolicy,
    parse_retry_after,
    with_retries,
)
from stageflow.video.analysis.evidence import (
    NEEDS_CHECK,
    Candidate,
    FrameIn,
    RangeEvidence,
    SegmentIn,
    TimeRange,
    VideoEvidence,
    on_screen_times,
    segments_in,
)


class GeminiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: SecretStr | None = None  # default: env GEMINI_API_KEY
    api_key_block: str | None = None  # a Prefect Secret block name
    model: str = "gemini-2.5-flash"
    base_url: str = "https://generativelanguage.googleapis.com"
    timeout_s: float = 60.0
    attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    temperature: float = 0.3
    thinking_budget: int = 1024  # thinkingConfig.thinkingBudget (thinking counts against the cap)
    ranges_answer_tokens: int = 2048  # answer budget of pass a's schema (a list of ranges)
    candidate_answer_tokens: int = 1024  # answer budget of pass b's schema (one small object)
    retry_cap_factor: float = 2.0  # a MAX_TOKENS / empty answer is asked again once with cap x this
    frames_per_range: int = Field(default=3, ge=0, le=16)  # kept frames sent as JPEG inline parts
    frame_max_side: int = 768  # frames are downscaled to this longest side before sending
    max_prompt_chars: int = 24000  # prompt budget per call (~8k tokens); longer transcripts are cut
    ocr_window_s: float = 2.0
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 300.0


# ---------------------------------------------------------------------- output schemas (pydantic + OpenAPI)
class RangeOut(BaseModel):
    start: float
    end: float
    reason: str = ""

    @field_validator("end")
    @classmethod
    def _ordered(cls, end: float, info: Any) -> float:
        if end < info.data.get("start", 0.0):
            raise ValueError("end before start")
        return end


class RangesOut(BaseModel):
    ranges: list[RangeOut]


class CandidateOut(BaseModel):
    product_name: str | None = None
    brand: str | None = None
    category_path: list[str] = Field(default_factory=list, max_length=3)
    features: list[str] = Field(default_factory=list)
    hook_sentence: str | None = None
    summary: str | None = None
    hashtags: list[str] = Field(default_factory=list)
    confidence: float = Field(ge=0.0, le=1.0)


_STR_OR_NULL = {"type": "string", "nullable": True}
RANGES_SCHEMA = {
    "type": "object",
    "properties": {
        "ranges": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "start": {"type": "number"},
                    "end": {"type": "number"},
                    "reason": {"type": "string"},
                },
                "required": ["start", "end"],
            },
        }
    },
    "required": ["ranges"],
}
CANDIDATE_SCHEMA = {
    "type": "object",
    "properties": {
        "product_name": _STR_OR_NULL,
        "brand": _STR_OR_NULL,
        "category_path": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "features": {"type": "array", "items": {"type": "string"}},
        "hook_sentence": _STR_OR_NULL,
        "summary": _STR_OR_NULL,
        "hashtags": {"type": "array", "items": {"type": "string"}},
        "confidence": {"type": "number"},
    },
    "required": ["product_name", "brand", "category_path", "confidence"],
}

SYSTEM_RANGES = (
    "You read a video transcript with timestamps. Return the time ranges where the speaker shows, describes, "
    "uses, owns or recommends a specific item. A mere brand mention is not enough. Use only times present in "
    "the transcript. Answer JSON only."
)
SYSTEM_CANDIDATE = (
    "You extract one product candidate from a video range: the speech, the on-screen text (OCR) and the "
    "objects detected. Use only what the evidence says: unknown values are null; if the product name is "
    f'unclear, product_name is "{NEEDS_CHECK}". Never invent names, brands or features. category_path has '
    "1-3 levels, in Korean. confidence is 0..1. Answer JSON only."
)


class GeminiAnalyzer:
    name = "gemini"

    def __init__(
        self,
        config: GeminiConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self._key = self._load_key(config)
        self.sleep = sleep
        self.policy = RetryPolicy(config.attempts, config.backoff_s, config.max_backoff_s)
        self.breaker = CircuitBreaker("gemini", config.breaker_threshold, config.breaker_cooldown_s, clock)
        self.tokens_used = 0
        self.http_calls = 0
        self._http: Any = None

    @staticmethod
    def _load_key(config: GeminiConfig) -> str:
        if config.api_key is not None and config.api_key.get_secret_value():
            return config.api_key.get_secret_value()
        if config.api_key_block:
            from prefect.blocks.system import Secret

            secret: Any = Secret.load(config.api_key_block)  # sync_compatible: typed as a coroutine too
            return str(secret.get())
        key = os.environ.get("GEMINI_API_KEY", "")
        if not key:
            raise BadInput(
                "gemini: no API key: set GEMINI_API_KEY, or api_key / api_key_block in the analyzer config"
            )
        return key

    # ------------------------------------------------------------------ pass a
    def find_ranges(self, transcript: Any) -> list[TimeRange]:
        segs = [s if isinstance(s, SegmentIn) else SegmentIn.model_validate(s) for s in transcript or ()]
        if not segs:
            return []
        lines = "\n".join(f"[{s.start:.1f}-{s.end:.1f}] {s.text}" for s in segs)
        prompt = ("Transcript:\n" + lines)[: self.config.max_prompt_chars]
        out = self._generate(
            SYSTEM_RANGES,
            [{"text": prompt}],
            RANGES_SCHEMA,
            RangesOut,
            what="finding ranges",
            answer_tokens=self.config.ranges_answer_tokens,
        )
        lo, hi = segs[0].start, max(s.end for s in segs)
        ranges = []
        for r in sorted(out.ranges, key=lambda r: r.start):
            start, end = max(lo, r.start), min(hi, r.end)
            if end >= start:
                ranges.append(TimeRange(start=start, end=end, reason=r.reason[:200]))
        return ranges

    # ------------------------------------------------------------------ pass b
    def candidate(self, time_range: Any, evidence: Any) -> Candidate:
        rng = time_range if isinstance(time_range, TimeRange) else TimeRange.model_validate(time_range)
        ev = evidence if isinstance(evidence, VideoEvidence) else VideoEvidence.model_validate(evidence)
        quotes = [s.text.strip() for s in segments_in(ev.transcript, rng.start, rng.end) if s.text.strip()]
        w = self.config.ocr_window_s
        ocr = [
            x.clipped(rng.start - w, rng.end + w) for x in ev.texts if x.overlaps(rng.start - w, rng.end + w)
        ]
        ocr = [x for x in ocr if x.text.strip()]
        dets = [d for d in ev.detections if rng.start <= d.t <= rng.end]
        prompt = json.dumps(
            {
                "video_title": ev.title,
                "range": [rng.start, rng.end],
                "speech": quotes,
                "on_screen_text": [
                    {
                        "from": round(x.first_t, 2),
                        "to": round(x.last_t, 2),
                        "text": x.text,
                        "confidence": round(x.confidence, 2),
                    }
                    for x in ocr
                ],
                "objects": sorted({d.label for d in dets}),
            },
            ensure_ascii=False,
        )[: self.config.max_prompt_chars]
        frames = range_frames(ev.frames, rng.start - w, rng.end + w, self.config.frames_per_range)
        parts: list[dict[str, Any]] = [{"text": prompt}]
        for f in frames:
            data = jpeg_bytes(f.path, self.config.frame_max_side)
            if data is not None:
                parts.append({"text": f"frame at {f.t:.1f}s"})
                parts.append(
                    {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(data).decode()}}
                )
        out = self._generate(
            SYSTEM_CANDIDATE,
            parts,
            CANDIDATE_SCHEMA,
            CandidateOut,
            what=f"range {rng.start:.1f}-{rng.end:.1f}s",
            answer_tokens=self.config.candidate_answer_tokens,
        )
        name = (out.product_name or "").strip() or NEEDS_CHECK
        return Candidate(
            video_id=ev.video_id,
            product_name=name,
            brand=(out.brand or "").strip() or None,
            category_path=tuple(c for c in out.category_path if c.strip())[:3],
            features=tuple(out.features),
            start=rng.start,
            end=rng.end,
            evidence=RangeEvidence(
                quotes=tuple(quotes),
                ocr_texts=tuple(dict.fromkeys(o.text.strip() for o in ocr)),
                detections=tuple(dict.fromkeys(d.label for d in dets)),
                frame_times=tuple(
                    sorted(
                        {
                            round(t, 3)
                            for t in [*(d.t for d in dets), *(f.t for f in frames), *on_screen_times(ocr)]
                        }
                    )
                ),
            ),
            hook_sentence=out.hook_sentence,
            summary=out.summary,
            hashtags=tuple(out.hashtags)[:10],
            confidence=min(out.confidence, 0.5) if name == NEEDS_CHECK else out.confidence,
        )

    # ------------------------------------------------------------------ transport
    def _client(self) -> Any:
        if self._http is None:
            import httpx

            self._http = httpx.Client(base_url=self.config.base_url, timeout=self.config.timeout_s)
        return self._http

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _generate(
        self,
        system: str,
        parts: list[dict[str, Any]],
        schema: dict[str, Any],
        model: type[BaseModel],
        *,
        what: str,
        answer_tokens: int,
    ) -> Any:
        """One schema-constrained call; a MAX_TOKENS or empty answer is asked again once with a larger
        cap, then fails naming the cap."""
        cap = self.config.thinking_budget + answer_tokens
        try:
            return self._generate_capped(system, parts, schema, model, what=what, cap=cap)
        except _Truncated:
            bigger = int(cap * self.config.retry_cap_factor)
        try:
            return self._generate_capped(system, parts, schema, model, what=what, cap=bigger)
        except _Truncated as exc:
            raise AnalysisFailed(
                f"gemini {what}: {exc} at maxOutputTokens {cap} and again at {bigger} "
                f"(thinking budget {self.config.thinking_budget}); raise candidate_answer_tokens / "
                "ranges_answer_tokens or lower thinking_budget"
            ) from None

    def _generate_capped(
        self,
        system: str,
        parts: list[dict[str, Any]],
        schema: dict[str, Any],
        model: type[BaseModel],
        *,
        what: str,
        cap: int,
    ) -> Any:
        import httpx

        self.breaker.before_call()
        path = f"/v1beta/models/{self.config.model}:generateContent"
        body = {
            "contents": [{"role": "user", "parts": parts}],
            "systemInstruction": {"parts": [{"text": system}]},
            "generationConfig": {
                "temperature": self.config.temperature,
                "maxOutputTokens": cap,
                "thinkingConfig": {"thinkingBudget": self.config.thinking_budget},
                "responseMimeType": "application/json",
                "responseSchema": schema,
            },
        }

        def attempt() -> Any:
            self.http_calls += 1
            try:
                resp = self._client().post(path, json=body, headers={"x-goog-api-key": self._key})
            except httpx.TimeoutException:
                raise Retryable(f"timed out after {self.config.timeout_s:g} s") from None
            except httpx.TransportError as exc:
                raise Retryable(f"connection failed ({type(exc).__name__})") from None
            if resp.status_code in (401, 403) or (resp.status_code == 400 and "API_KEY" in resp.text):
                self.breaker.failure(f"HTTP {resp.status_code}")
                raise ServiceAuthError(
                    f"gemini: HTTP {resp.status_code} {self._redact(_error_message(resp))}: "
                    "the API key is wrong or lacks access; fix GEMINI_API_KEY or the Secret block"
                )
            if resp.status_code == 429 or resp.status_code >= 500:
                raise Retryable(
                    f"HTTP {resp.status_code} {self._redact(_error_message(resp))}",
                    parse_retry_after(resp.headers.get("Retry-After")),
                )
            if not resp.is_success:
                raise AnalysisFailed(
                    f"gemini {what}: HTTP {resp.status_code} {self._redact(_error_message(resp))}"
                )
            try:
                data = resp.json()
                usage = data.get("usageMetadata") or {}
                self.tokens_used += int(usage.get("totalTokenCount") or 0)
                cand = data["candidates"][0]
                reason = cand.get("finishReason", "STOP")
                content = cand.get("content") or {}
                text = "".join(p.get("text", "") for p in content.get("parts") or () if not p.get("thought"))
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise Retryable("response is not a generateContent answer") from None
            if reason == "MAX_TOKENS":
                self.breaker.success()
                raise _Truncated("answer cut off (finishReason MAX_TOKENS)")
            if reason == "STOP" and not text.strip():
                self.breaker.success()
                raise _Truncated("empty answer")
            if reason != "STOP":
                raise Retryable(f"finishReason {reason}")
            try:
                return model.model_validate_json(text)
            except ValidationError as exc:
                first = exc.errors()[0]
                if first["type"] == "json_invalid":
                    raise Retryable("model answered invalid JSON") from None
                loc = ".".join(str(p) for p in first["loc"]) or "(root)"
                raise Retryable(f"model answer violates the schema at {loc}: {first['msg']}") from None

        def give_up(last: str) -> Any:
            if last.startswith(("HTTP", "timed out", "connection")):  # the service failed, not the model
                self.breaker.failure(last)
            raise AnalysisFailed(f"gemini {what}: failed after {self.policy.attempts} attempts: {last}")

        result = with_retries(attempt, self.policy, self.sleep, give_up)
        self.breaker.success()
        return result

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


class _Truncated(Exception):
    """An answer cut off by the output cap (or empty): asked again once with a larger cap."""


def range_frames(frames: Any, start: float, end: float, count: int) -> list[FrameIn]:
    """At most ``count`` of the kept frames inside [start, end], spread evenly over the range."""
    inside = sorted((f for f in frames if start <= f.t <= end), key=lambda f: f.t)
    if count <= 0 or not inside:
        return []
    if len(inside) <= count:
        return inside
    step = (len(inside) - 1) / max(1, count - 1)
    return [inside[round(i * step)] for i in range(count)] if count > 1 else [inside[len(inside) // 2]]


def jpeg_bytes(path: str, max_side: int) -> bytes | None:
    """The frame as JPEG bytes, downscaled to ``max_side`` (Pillow when installed, else the file as
    it is); None when it cannot be read (the range is still analysed, without that frame)."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    try:
        from PIL import Image
    except ImportError:
        return raw if raw[:3] == b"\xff\xd8\xff" else None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if raw[:3] == b"\xff\xd8\xff" and max(img.size) <= max_side:
                return raw
            rgb = img.convert("RGB")
            rgb.thumbnail((max_side, max_side))
            out = io.BytesIO()
            rgb.save(out, format="JPEG", quality=85)
            return out.getvalue()
    except (OSError, ValueError):
        return None


def _error_message(resp: Any) -> str:
    try:
        data = resp.json()
        return str(data.get("error", {}).get("message", ""))[:200]
    except (ValueError, AttributeError):
        return resp.text[:200]
