"""The ``gemini`` analyzer: Gemini's REST generateContent through httpx, the two passes of the
original (ranges from the transcript, then one candidate per range) with JSON-schema-constrained
output validated by pydantic. Unlike the original, pass b also shows the model the on-screen text and
the detected objects of the range.

Invalid JSON, a schema violation, a finishReason other than STOP, 429 and 5xx are retried; then the
range fails with AnalysisFailed (the engine records it and continues). The API key (config SecretStr,
env GEMINI_API_KEY, or a Prefect Secret block) is sent in a header and never logged or put in errors.
Evidence quotes are taken from the transcript, never from the model.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from stageflow.commerce.resilience import (
    CircuitBreaker,
    Retryable,
    RetryPolicy,
    parse_retry_after,
    with_retries,
)
from stageflow.errors import AnalysisFailed, BadInput, ServiceAuthError
from stageflow.video.analysis.evidence import (
    NEEDS_CHECK,
    Candidate,
    RangeEvidence,
    SegmentIn,
    TimeRange,
    VideoEvidence,
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
    max_output_tokens: int = 2048  # token budget per call (output)
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

            return str(Secret.load(config.api_key_block).get())
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
        out = self._generate(SYSTEM_RANGES, prompt, RANGES_SCHEMA, RangesOut, what="finding ranges")
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
        ocr = [o for o in ev.ocr if rng.start - w <= o.t <= rng.end + w and o.text.strip()]
        dets = [d for d in ev.detections if rng.start <= d.t <= rng.end]
        prompt = json.dumps(
            {
                "video_title": ev.title,
                "range": [rng.start, rng.end],
                "speech": quotes,
                "on_screen_text": [
                    {"t": round(o.t, 2), "text": o.text, "confidence": round(o.confidence, 2)} for o in ocr
                ],
                "objects": sorted({d.label for d in dets}),
            },
            ensure_ascii=False,
        )[: self.config.max_prompt_chars]
        out = self._generate(
            SYSTEM_CANDIDATE,
            prompt,
            CANDIDATE_SCHEMA,
            CandidateOut,
            what=f"range {rng.start:.1f}-{rng.end:.1f}s",
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
                frame_times=tuple(sorted({round(x.t, 3) for x in [*ocr, *dets]})),
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
        self, system: str, prompt: str, schema: dict[str, Any], model: type[BaseModel], *, what: str
    ) -> Any:
        import httpx

        self.breaker.before_call()
        path = f"/v1beta/models/{self.config.model}:generateContent"
        body = {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "systemInstruction": {"parts": [{"text": system}]},
            "generationConfig": {
                "temperature": self.config.temperature,
                "maxOutputTokens": self.config.max_output_tokens,
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
                text = "".join(p.get("text", "") for p in cand["content"]["parts"])
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise Retryable("response is not a generateContent answer") from None
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


def _error_message(resp: Any) -> str:
    try:
        data = resp.json()
        return str(data.get("error", {}).get("message", ""))[:200]
    except (ValueError, AttributeError):
        return resp.text[:200]
