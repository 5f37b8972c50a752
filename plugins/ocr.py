"""Built-in OCR engines: ``rapidocr`` (rapidocr-onnxruntime with its shipped English/Chinese models;
det/rec/dict paths configurable, e.g. for a Korean recogniser) and ``tesseract`` (the Debian binary
with tesseract-ocr-kor, run through subprocess with TSV output; reads Korean offline).

Both read whole frames (``read``) and text-region crops (``recognise``, used by
:mod:`stageflow.video.regions` with rapidocr's detector: ``detect_boxes``). Tesseract reads all crops
of a batch in one process (a list file, one TSV page per crop) with ``--psm 7`` and
``OMP_THREAD_LIMIT`` set only in that subprocess's environment (set process-wide it made
faster-whisper return zero segments). Never downloads models; heavy imports only inside backends.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stageflow.api import BadInput, Frame, JobFailed, OcrText, Register, hookimpl
from stageflow.video.ocrtext import NoiseFilter, make_text


class RapidOcrConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    det_model_path: str | None = None
    rec_model_path: str | None = None
    rec_keys_path: str | None = Field(None, description="character dictionary of the rec model")
    min_confidence: float = 0.5
    min_chars: int = 2
    min_script_share: float = Field(0.6, ge=0, le=1, description="share of Hangul/Latin/digits")
    max_side: int = Field(1280, ge=64, description="frames are downscaled to this longest side first")
    det_max_side: int = Field(
        640, ge=64, description="longest side for text-region detection (the frame is downscaled to it)"
    )


class RapidOcrEngine:
    name = "rapidocr"

    def __init__(self, config: RapidOcrConfig):
        from stageflow.video.offline import MODELS

        self.config = config
        self.filter = NoiseFilter(config.min_confidence, config.min_chars, config.min_script_share)
        kwargs: dict[str, str] = {}
        for option in ("det_model_path", "rec_model_path", "rec_keys_path"):
            value = getattr(config, option)
            if value is not None:
                if not Path(value).expanduser().is_file():
                    raise BadInput(f"rapidocr: {option} {value} does not exist: give an existing file")
                kwargs[option] = str(Path(value).expanduser())
        key = "|".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
        self.engine = MODELS.get("rapidocr", key, lambda: self._load(kwargs))

    @staticmethod
    def _load(kwargs: dict[str, str]) -> Any:
        from rapidocr_onnxruntime import RapidOCR

        return RapidOCR(**kwargs)

    def read(self, frames: Sequence[Frame]) -> list[OcrText]:
        out: list[OcrText] = []
        for frame in frames:
            image, scale = _downscale(frame.image, self.config.max_side)
            result, _ = self.engine(image[..., ::-1].copy())  # BGR, as OpenCV reads
            for points, text, score in result or []:
                xs = [float(p[0]) / scale for p in points]
                ys = [float(p[1]) / scale for p in points]
                item = make_text(
                    frame.t, text, float(score), (min(xs), min(ys), max(xs), max(ys)), "rapidocr"
                )
                if self.filter.keep(item):
                    out.append(item)
        return out

    def detect_boxes(self, image: Any) -> list[tuple[float, float, float, float]]:
        """Text line boxes of an RGB frame (rapidocr's DB detector only, no recognition). A frame
        larger than ``det_max_side`` is detected at that size; a smaller one as rapidocr does it
        (its shorter side upscaled to 736 px: finer boxes for small text on small frames)."""
        small, scale = _downscale(image, self.config.det_max_side)
        if scale < 1.0:
            result = _detect_at_size(self.engine, small[..., ::-1].copy(), self.config.det_max_side)
        else:
            found, _ = self.engine(image[..., ::-1].copy(), use_det=True, use_cls=False, use_rec=False)
            result = list(found or [])
        boxes = []
        for points in result:
            xs = [float(p[0]) / scale for p in points]
            ys = [float(p[1]) / scale for p in points]
            boxes.append((min(xs), min(ys), max(xs), max(ys)))
        return boxes

    def recognise(self, crops: Sequence[Any]) -> list[tuple[str, float]]:
        """One ``(text, confidence)`` per text-line crop (rapidocr's recogniser only)."""
        out = []
        for image in crops:
            result, _ = self.engine(image[..., ::-1].copy(), use_det=False, use_cls=False, use_rec=True)
            text, score = (result[0][0], float(result[0][1])) if result else ("", 0.0)
            out.append((str(text), score))
        return out


def _detect_at_size(engine: Any, bgr: Any, max_side: int) -> list[Any]:
    """rapidocr's DB detector on ``bgr`` at (at most) ``max_side``: its own preprocessing uses
    ``limit_type: min`` and upscales the shorter side to 736 px (a 720p frame downscaled to 960x540
    still ran at 1312x736, ~0.6 s on 2 cores); here the downscaled frame keeps its size (640 px:
    ~4x fewer pixels than 1312x736, caption boxes within a few pixels of the full-size ones). Falls
    back to the engine's own call on another rapidocr layout."""
    det: Any = getattr(engine, "text_det", None)
    try:
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

        prep = DetPreProcess(max_side, "max", det.mean, det.std)(bgr)
        if prep is None:
            return []
        preds = det.infer(prep)[0]
        found, _ = det.postprocess_op(preds, bgr.shape[:2])
        found = det.filter_tag_det_res(found, bgr.shape[:2])
    except (ImportError, AttributeError, TypeError):
        result, _ = engine(bgr, use_det=True, use_cls=False, use_rec=False)
        return [points for points in result or []]
    return list(found) if found is not None else []


def _downscale(image: Any, max_side: int) -> tuple[Any, float]:
    """``image`` resized so its longest side is at most ``max_side``; and the scale applied."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    import numpy as np
    from PIL import Image

    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)), scale


class TesseractConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    languages: str = "kor+eng"
    psm: int = 6  # whole frames
    region_psm: int = 7  # text-region crops: one line each
    binary: str = "tesseract"
    min_confidence: float = 0.5
    min_chars: int = 2
    min_script_share: float = Field(0.6, ge=0, le=1, description="share of Hangul/Latin/digits")
    timeout_s: float = 60.0
    threads: int = Field(1, ge=1, description="OMP_THREAD_LIMIT of the tesseract subprocess only")
    min_crop_height: int = Field(40, ge=8, description="shorter crops are upscaled to this height")


class TesseractEngine:
    name = "tesseract"

    def __init__(self, config: TesseractConfig):
        exe = shutil.which(config.binary)
        if exe is None:
            raise BadInput(
                f"tesseract: '{config.binary}' not found: apt-get install tesseract-ocr tesseract-ocr-kor"
            )
        listed = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=30)
        have = set(listed.stdout.split())
        missing = [lang for lang in config.languages.split("+") if lang not in have]
        if missing:
            raise BadInput(
                f"tesseract: language data {', '.join(missing)} not installed: apt-get install "
                + " ".join(f"tesseract-ocr-{m}" for m in missing)
            )
        self.exe = exe
        self.config = config
        self.filter = NoiseFilter(config.min_confidence, config.min_chars, config.min_script_share)
        # only the subprocess: OMP_THREAD_LIMIT in this process breaks faster-whisper
        self.env = {**os.environ, "OMP_THREAD_LIMIT": str(config.threads)}

    def read(self, frames: Sequence[Frame]) -> list[OcrText]:
        out: list[OcrText] = []
        for frame in frames:
            out.extend(t for t in self._read_one(frame) if self.filter.keep(t))
        return out

    def _read_one(self, frame: Frame) -> list[OcrText]:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame.image).save(buf, format="PNG")
        cmd = [self.exe, "stdin", "stdout", "-l", self.config.languages, "--psm", str(self.config.psm), "tsv"]
        try:
            proc = subprocess.run(
                cmd, input=buf.getvalue(), capture_output=True, timeout=self.config.timeout_s, env=self.env
            )
        except subprocess.TimeoutExpired:
            raise JobFailed(
                f"tesseract: timed out after {self.config.timeout_s} s on frame t={frame.t}"
            ) from None
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise JobFailed(f"tesseract: exit {proc.returncode}: {err[-1] if err else ''}")
        return parse_tsv(proc.stdout.decode("utf-8", errors="replace"), frame.t)

    def recognise(self, crops: Sequence[Any]) -> list[tuple[str, float]]:
        """One ``(text, confidence)`` per text-line crop: one tesseract process for all of them."""
        from PIL import Image

        if not crops:
            return []
        with tempfile.TemporaryDirectory(prefix="stageflow-ocr-") as tmp:
            names = []
            for i, image in enumerate(crops):
                img = Image.fromarray(image)
                if img.height < self.config.min_crop_height:
                    f = self.config.min_crop_height / max(1, img.height)
                    img = img.resize((max(1, round(img.width * f)), self.config.min_crop_height))
                names.append(str(Path(tmp) / f"{i:05d}.png"))
                img.save(names[-1])
            listing = Path(tmp) / "crops.txt"
            listing.write_text("\n".join(names) + "\n", encoding="utf-8")
            cmd = [self.exe, str(listing), "stdout", "-l", self.config.languages]
            cmd += ["--psm", str(self.config.region_psm), "tsv"]
            timeout = self.config.timeout_s * max(1, len(crops) // 8 + 1)
            try:
                proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=self.env)
            except subprocess.TimeoutExpired:
                raise JobFailed(f"tesseract: timed out after {timeout} s on {len(crops)} crops") from None
            if proc.returncode != 0:
                err = proc.stderr.decode(errors="replace").strip().splitlines()
                raise JobFailed(f"tesseract: exit {proc.returncode}: {err[-1] if err else ''}")
        return parse_tsv_lines(proc.stdout.decode("utf-8", errors="replace"), len(crops))


def parse_tsv_lines(tsv: str, pages: int) -> list[tuple[str, float]]:
    """One ``(text, mean confidence)`` per TSV page (a ``--psm 7`` crop is one line), its words
    joined by :func:`space_after` (tesseract's Korean model splits words into syllables, so its own
    word boundaries are not the text's spaces)."""
    words: dict[int, list[tuple[str, float, int, int, int]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip() or float(cols[10]) < 0:
            continue
        left, width, height = int(cols[6]), int(cols[8]), int(cols[9])
        words.setdefault(int(cols[1]) - 1, []).append(
            (cols[11].strip(), float(cols[10]) / 100.0, left, left + width, height)
        )
    out = []
    for page in range(pages):
        ws = sorted(words.get(page, []), key=lambda w: w[2])
        if not ws:
            out.append(("", 0.0))
            continue
        gaps, right = [], ws[0][3]
        for w in ws[1:]:
            gaps.append(max(0, w[2] - right))
            right = max(right, w[3])
        spaces = space_after(gaps, statistics.median(w[4] for w in ws))
        text = ws[0][0] + "".join((" " if sp else "") + w[0] for sp, w in zip(spaces, ws[1:], strict=True))
        out.append((text, sum(w[1] for w in ws) / len(ws)))
    return out


def space_after(gaps: Sequence[float], line_h: float) -> list[bool]:
    """Which gaps between a line's word boxes are spaces: those of at least 0.3 of ``line_h`` (the
    words' median height: tesseract sometimes gives a syllable the crop's whole height). But when the
    gaps over that fall in two groups, two or more near-equal gaps (within 20%) well under the rest
    (a jump of over 0.1 of the height and 30%), the lower group are a word split into syllables: a
    96 px Korean caption's syllables sit 30-31 px apart, its space 45 px; a 64 px one's syllables
    15-16 px, its spaces 20 and 27 px, so no fixed share of the height fits both."""
    cut = 0.3 * line_h
    wide = sorted(g for g in gaps if g >= cut)
    for k in range(2, len(wide)):
        low, high = wide[:k], wide[k]
        if low[-1] <= 1.2 * low[0] and high - low[-1] > 0.1 * line_h and high > 1.3 * low[-1]:
            cut = (low[-1] + high) / 2
            break
    return [g >= cut for g in gaps]


def parse_tsv(tsv: str, t: float) -> list[OcrText]:
    """Tesseract TSV words grouped into lines: text joined by spaces, mean confidence, union box."""
    lines: dict[tuple[str, str, str, str], list[tuple[str, float, tuple[int, int, int, int]]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        conf = float(cols[10])
        if conf < 0:
            continue
        left, top, width, height = (int(c) for c in cols[6:10])
        lines.setdefault((cols[1], cols[2], cols[3], cols[4]), []).append(
            (cols[11].strip(), conf / 100.0, (left, top, left + width, top + height))
        )
    out = []
    for words in lines.values():
        text = " ".join(w[0] for w in words)
        conf = sum(w[1] for w in words) / len(words)
        box = (
            float(min(w[2][0] for w in words)),
            float(min(w[2][1] for w in words)),
            float(max(w[2][2] for w in words)),
            float(max(w[2][3] for w in words)),
        )
        out.append(make_text(t, text, conf, box, "tesseract"))
    return out


@hookimpl
def register_ocr_engines(register: Register) -> None:
    register(
        "rapidocr",
        RapidOcrEngine,
        config=RapidOcrConfig,
        requires=("rapidocr_onnxruntime",),
        extra="video",
        description="RapidOCR (PP-OCRv4, onnxruntime): shipped English/Chinese models; det/rec paths",
    )
    register(
        "tesseract",
        TesseractEngine,
        config=TesseractConfig,
        description="Tesseract binary (apt tesseract-ocr tesseract-ocr-kor): Korean offline, TSV lines",
    )
