"""Built-in detectors: ``ultralytics`` (YOLO weights, batched over kept frames, device automatic) and
``onnx`` (the same models exported to ONNX, run by onnxruntime through ultralytics; ~2x faster on CPU).

Sets ultralytics' offline switches (YOLO_OFFLINE, YOLO_AUTOINSTALL=0, a local font) before importing
it, so nothing is ever downloaded; a model that is not a local path fails with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stageflow.api import ConfigError, Detection, Frame, Register, hookimpl


class UltralyticsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "yolo11n.pt"
    classes: list[str] = Field(default_factory=list, description="keep only these labels (empty: all)")
    confidence: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.45, ge=0, le=1)
    imgsz: int = 640
    batch_size: int = 8
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_detections: int = 100


class UltralyticsDetector:
    suffixes: tuple[str, ...] = (".pt", ".yaml", ".yml")
    backend = "ultralytics"

    def __init__(self, config: UltralyticsConfig):
        from stageflow.video.offline import MODELS, auto_device, local_model, prepare_ultralytics

        prepare_ultralytics()
        path = local_model(config.model, backend=self.backend, option="model", looks_like_path=True)
        self.config = config
        self.device = auto_device() if config.device == "auto" else config.device
        self.model = MODELS.get(self.backend, f"{path}|{self.device}", lambda: self._load(str(path)))
        names: dict[int, str] = dict(self.model.names)
        unknown = [c for c in config.classes if c not in names.values()]
        if unknown:
            raise ConfigError(f"{self.backend}: classes {unknown} are not labels of {path}")
        self.class_ids = [i for i, n in names.items() if n in config.classes] or None

    def _load(self, path: str) -> Any:
        from ultralytics import YOLO

        from stageflow.video.offline import ModelNotFound

        try:
            return YOLO(path, task="detect")
        except Exception as exc:  # a file that is not a model
            raise ModelNotFound(
                f"{self.backend}: cannot load model {path}: {type(exc).__name__}: {exc}"
            ) from None

    def detect(self, frames: Sequence[Frame]) -> list[Detection]:
        out: list[Detection] = []
        cfg = self.config
        for start in range(0, len(frames), cfg.batch_size):
            chunk = frames[start : start + cfg.batch_size]
            results = self.model.predict(
                [f.image[..., ::-1] for f in chunk],  # ultralytics takes BGR arrays
                conf=cfg.confidence,
                iou=cfg.iou,
                imgsz=cfg.imgsz,
                classes=self.class_ids,
                device=self.device,
                max_det=cfg.max_detections,
                batch=len(chunk),
                verbose=False,
            )
            for frame, result in zip(chunk, results, strict=True):
                boxes = result.boxes
                if boxes is None:
                    continue
                for xyxy, conf, cls in zip(
                    boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
                ):
                    out.append(
                        Detection(
                            t=frame.t,
                            label=str(result.names[int(cls)]),
                            confidence=round(float(conf), 4),
                            box=tuple(round(float(v), 1) for v in xyxy),  # type: ignore[arg-type]
                        )
                    )
        return out


class OnnxConfig(UltralyticsConfig):
    model: str = "yolo11n.onnx"
    device: Literal["auto", "cpu", "cuda"] = "cpu"


class OnnxDetector(UltralyticsDetector):
    """A YOLO model exported with ``yolo export format=onnx``, run by onnxruntime."""

    backend = "onnx"

    def __init__(self, config: OnnxConfig):
        super().__init__(config)


@hookimpl
def register_detectors(register: Register) -> None:
    register(
        "ultralytics",
        UltralyticsDetector,
        config=UltralyticsConfig,
        requires=("ultralytics", "torch"),
        extra="video",
        description="YOLO (ultralytics): batched over kept frames, conf 0.25, IoU 0.45, offline",
    )
    register(
        "onnx",
        OnnxDetector,
        config=OnnxConfig,
        requires=("ultralytics", "onnxruntime"),
        extra="video",
        description="YOLO exported to ONNX, run by onnxruntime (no GPU torch needed)",
    )
