"""Generated test material: random-weight Whisper (ctranslate2 + the real multilingual tokenizer) and
YOLO models, and videos made from PIL frames with drawn text, espeak-ng speech and a PyAV mux.

Used by tests and benchmarks only; the analysis pipeline never imports this module. Never downloads
anything: the tokenizer comes from the ``multilingual.tiktoken`` asset of the ``openai-whisper``
package (installed ``--no-deps``) and YOLO models are built from their ``.yaml`` architecture.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- Whisper


@dataclass(frozen=True)
class WhisperSize:
    """Architecture of a Whisper model (``SMALL`` has the real "small" compute)."""

    d_model: int
    layers: int
    heads: int
    ffn: int


TINY = WhisperSize(d_model=64, layers=1, heads=2, ffn=128)
SMALL = WhisperSize(d_model=768, layers=12, heads=12, ffn=3072)


def _tiktoken_asset() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("whisper")
    if spec is None or spec.origin is None:
        raise RuntimeError("the tokenizer asset needs `pip install --no-deps openai-whisper`")
    return Path(spec.origin).parent / "assets" / "multilingual.tiktoken"


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def whisper_languages() -> list[str]:
    """Whisper's language codes in token order, read from the openai-whisper source without
    importing it (its import needs tiktoken and torch)."""
    import ast

    source = (_tiktoken_asset().parents[1] / "tokenizer.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "LANGUAGES":
            return [ast.literal_eval(k) for k in node.value.keys]  # type: ignore[attr-defined]
    raise RuntimeError("LANGUAGES not found in whisper/tokenizer.py")


def whisper_special_tokens() -> list[str]:
    """Whisper's special tokens in id order after the BPE ranks (100 languages, 1501 timestamps)."""
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{lang}|>" for lang in whisper_languages()],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *[f"<|{i * 0.02:.2f}|>" for i in range(1501)],
    ]


def build_whisper_tokenizer(dest: Path) -> list[str]:
    """Write Whisper's real multilingual ``tokenizer.json`` (converted from tiktoken) to ``dest``;
    return the full vocabulary in id order."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    ranks: dict[bytes, int] = {}
    for line in _tiktoken_asset().read_text().splitlines():
        if line:
            encoded, number = line.split()
            ranks[base64.b64decode(encoded)] = int(number)
    enc = _bytes_to_unicode()

    def as_str(b: bytes) -> str:
        return "".join(enc[c] for c in b)

    vocab = {as_str(t): r for t, r in ranks.items()}
    merges: list[tuple[bytes, bytes, int]] = []
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        local = [
            (token[:i], token[i:], rank)
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        ]
        local.sort(key=lambda m: (ranks[m[0]], ranks[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2])
    bpe = models.BPE(vocab=vocab, merges=[(as_str(a), as_str(b)) for a, b, _ in merges])
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = whisper_special_tokens()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.save(str(dest))
    ordered = [""] * len(vocab)
    for s, r in vocab.items():
        ordered[r] = s
    return ordered + specials


def build_whisper_model(dest: Path, size: WhisperSize = TINY, seed: int = 0) -> Path:
    """A random-weight multilingual Whisper model directory faster-whisper can load offline."""
    from ctranslate2.specs import whisper_spec

    dest.mkdir(parents=True, exist_ok=True)
    vocabulary = build_whisper_tokenizer(dest / "tokenizer.json")
    n_vocab, d, ff = len(vocabulary), size.d_model, size.ffn
    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def norm(spec: Any) -> None:
        spec.gamma = np.ones(d, np.float32)
        spec.beta = np.zeros(d, np.float32)

    def linear(spec: Any, out: int, inp: int) -> None:
        spec.weight = rand(out, inp)
        spec.bias = np.zeros(out, np.float32)

    def ffn(spec: Any) -> None:
        norm(spec.layer_norm)
        linear(spec.linear_0, ff, d)
        linear(spec.linear_1, d, ff)

    spec = whisper_spec.WhisperSpec(size.layers, size.heads, size.layers, size.heads)
    enc = spec.encoder
    enc.conv1.weight, enc.conv1.bias = rand(d, 80, 3), np.zeros(d, np.float32)
    enc.conv2.weight, enc.conv2.bias = rand(d, d, 3), np.zeros(d, np.float32)
    enc.position_encodings.encodings = rand(1500, d)
    norm(enc.layer_norm)
    for layer in enc.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)
        linear(layer.self_attention.linear[1], d, d)
        ffn(layer.ffn)
    dec = spec.decoder
    dec.embeddings.weight = rand(n_vocab, d)
    dec.position_encodings.encodings = rand(448, d)
    norm(dec.layer_norm)
    dec.projection.weight = dec.embeddings.weight
    for layer in dec.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)
        linear(layer.self_attention.linear[1], d, d)
        norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], d, d)
        linear(layer.attention.linear[1], 2 * d, d)
        linear(layer.attention.linear[2], d, d)
        ffn(layer.ffn)
    specials = whisper_special_tokens()
    first_special = n_vocab - len(specials)
    lang_ids = [first_special + 2 + i for i in range(100)]
    spec.config.suppress_ids = []
    spec.config.suppress_ids_begin = [220, first_special]
    spec.config.lang_ids = lang_ids
    spec.config.alignment_heads = [(size.layers - 1, h) for h in range(size.heads)]
    spec.register_vocabulary(vocabulary)
    spec.validate()
    spec.optimize(quantization=None)
    spec.save(str(dest))
    return dest


# --------------------------------------------------------------------------- YOLO


def build_yolo_model(dest: Path, config_dir: Path, arch: str = "yolo11n.yaml") -> Path:
    """Save an untrained YOLO (built offline from its architecture yaml) as a ``.pt`` file."""
    from stageflow.video.offline import prepare_ultralytics

    prepare_ultralytics(config_dir)
    from ultralytics import YOLO

    model = YOLO(arch)
    from ultralytics.cfg import get_cfg  # noqa: F401 - ensures the package data is importable
    from ultralytics.utils import ROOT, YAML

    # the COCO label names a trained yolo11n.pt carries (an untrained model has "0".."79")
    model.model.names = dict(  # type: ignore[union-attr]  # typed str | None; a model after YOLO(arch)
        YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    )
    model.save(str(dest))
    return dest


# --------------------------------------------------------------------------- media


def speak(text: str, dest: Path, voice: str = "en", speed: int | None = None) -> Path:
    """A WAV of ``text`` spoken by espeak-ng (Debian package ``espeak-ng``); ``speed`` in words per
    minute (espeak-ng's ``-s``, default 175)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    rate = ["-s", str(speed)] if speed else []
    subprocess.run([exe, "-v", voice, *rate, "-w", str(dest), text], check=True, capture_output=True)
    return dest


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and the sample rate of a PCM WAV."""
    with wave.open(str(path), "rb") as fh:
        data = np.frombuffer(fh.readframes(fh.getnframes()), dtype=np.int16)
        if fh.getnchannels() > 1:
            data = data.reshape(-1, fh.getnchannels())[:, 0]
        return data.copy(), fh.getframerate()


@dataclass(frozen=True)
class Scene:
    """``seconds`` of a still background colour with ``text`` drawn large in the middle."""

    seconds: float
    text: str = ""
    background: tuple[int, int, int] = (255, 255, 255)
    font: str | None = None  # a TTF path; default: DejaVu Sans (or NanumGothic for Hangul)


def _font(path: str | None, text: str, size: int) -> Any:
    from PIL import ImageFont

    candidates = [path] if path else []
    if any("\uac00" <= c <= "\ud7a3" for c in text):
        candidates += [
            "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
            "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
            "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
        ]
    candidates += ["/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"]
    for c in candidates:
        if c and Path(c).is_file():
            return ImageFont.truetype(c, size)
    return ImageFont.load_default(size)


def render_scene(scene: Scene, width: int, height: int, jitter: int = 0) -> np.ndarray:
    """One RGB frame of ``scene``; ``jitter`` shifts the text a few pixels (camera shake)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), scene.background)
    if scene.text:
        draw = ImageDraw.Draw(img)
        font = _font(scene.font, scene.text, max(12, height // 7))
        box = draw.textbbox((0, 0), scene.text, font=font)
        x = (width - (box[2] - box[0])) // 2 + jitter
        y = (height - (box[3] - box[1])) // 2
        draw.text((x, y), scene.text, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def make_video(
    dest: Path,
    scenes: Sequence[Scene],
    *,
    size: tuple[int, int] = (320, 180),
    fps: int = 10,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    with_video: bool = True,
    blur_frames: Sequence[int] = (),
) -> Path:
    """Mux an H.264 (+ AAC when ``audio`` is given) file from ``scenes``; frames listed in
    ``blur_frames`` are heavily blurred (they must fail the sharpness gate)."""
    import av
    from PIL import Image, ImageFilter

    width, height = size
    with av.open(str(dest), "w") as out:
        vstream = None
        if with_video:
            vstream = out.add_stream("libx264", rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.options = {"preset": "ultrafast"}
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=audio_rate)
            astream.layout = "mono"
        if vstream is not None:
            index = 0
            for scene in scenes:
                rendered = [render_scene(scene, width, height, jitter=j) for j in (0, 1)]
                for i in range(round(scene.seconds * fps)):
                    rgb = rendered[i % 2]
                    if index in blur_frames:
                        rgb = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(8)))
                    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    for packet in vstream.encode(frame):
                        out.mux(packet)
                    index += 1
            for packet in vstream.encode():
                out.mux(packet)
        if astream is not None and audio is not None:
            samples = audio.astype(np.int16)
            chunk = 1024
            for start in range(0, len(samples), chunk):
                part = samples[start : start + chunk]
                aframe = av.AudioFrame.from_ndarray(part.reshape(1, -1), format="s16", layout="mono")
                aframe.sample_rate = audio_rate
                aframe.pts = start
                for packet in astream.encode(aframe):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return dest


def make_audio_only(dest: Path, audio: np.ndarray, audio_rate: int = 16000) -> Path:
    """An AAC-in-MP4 file with no video track."""
    return make_video(dest, [], audio=audio, audio_rate=audio_rate, with_video=False)


def speech_track(
    text: str, seconds: float, rate: int = 16000, voice: str = "en", speed: int | None = None
) -> np.ndarray:
    """espeak-ng speech resampled to ``rate`` and padded/cut to ``seconds`` (int16)."""
    with tempfile.TemporaryDirectory() as tmp:
        samples, src_rate = read_wav(speak(text, Path(tmp) / "speech.wav", voice, speed))
    if src_rate != rate:
        idx = np.arange(0, len(samples), src_rate / rate)
        samples = np.interp(idx, np.arange(len(samples)), samples).astype(np.int16)
    total = int(seconds * rate)
    out = np.zeros(total, np.int16)
    out[: min(total, len(samples))] = samples[:total]
    return out


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path
