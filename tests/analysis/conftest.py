"""Fixtures for the analysis tests: a migrated store, a sample video's evidence (part 1's shape),
and loopback API servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stageflow.store import Store, open_store

from .servers import CoupangServer, GeminiServer, SheetsServer, SlackServer

ACCESS_KEY = "ak-test-0001"
SECRET_KEY = "sk-very-secret-value-9f8e7d"
GEMINI_KEY = "gm-secret-key-123456"
SLACK_TOKEN = "xoxb-secret-token-4242"
SHEETS_TOKEN = "ya29.secret-sheets-token"

CATALOG: list[dict[str, Any]] = [
    {"productId": 1, "productName": "라운드랩 자작나무 수분 선크림 50ml", "productPrice": 19900,
     "productImage": "https://img/1.jpg", "productUrl": "https://www.coupang.com/vp/products/1",
     "isRocket": True, "isFreeShipping": True, "categoryName": "선케어"},
    {"productId": 2, "productName": "로지텍 MX Master 3S 무선 마우스", "productPrice": 139000,
     "productImage": "https://img/2.jpg", "productUrl": "https://www.coupang.com/vp/products/2",
     "isRocket": True, "isFreeShipping": True, "categoryName": "마우스"},
    {"productId": 3, "productName": "대용량 선크림 아무거나 1+1", "productPrice": 9900,
     "productImage": "https://img/3.jpg", "productUrl": "https://www.coupang.com/vp/products/3",
     "isRocket": False, "isFreeShipping": False, "categoryName": "선케어"},
]  # fmt: skip

VIDEO: dict[str, Any] = {
    "id": "vid-001",
    "source": "folder",
    "title": "여름 데일리 루틴",
    "duration_s": 70.0,
    "transcript": [
        {"start": 0.0, "end": 4.0, "text": "안녕하세요 오늘은 여름 루틴 영상이에요"},
        {"start": 4.0, "end": 9.0, "text": "요즘 매일 쓰고 있는 라운드랩 자작나무 선크림 보여드릴게요!"},
        {"start": 9.0, "end": 14.0, "text": "진짜 촉촉하고 너무 좋아요! 강추!"},
        {"start": 20.0, "end": 25.0, "text": "나이키 얘기가 나왔는데 그건 다음에 할게요"},
        {"start": 40.0, "end": 45.0, "text": (
            "this Logitech MX Master is my favorite mouse, I use it every day. Really great!"
        )},
    ],
    "detections": [
        {"t": 6.0, "label": "bottle", "confidence": 0.8, "box": [0, 0, 10, 10]},
        {"t": 42.0, "label": "mouse", "confidence": 0.85, "box": [0, 0, 10, 10]},
        {"t": 42.5, "label": "person", "confidence": 0.9, "box": [0, 0, 10, 10]},
    ],
    "ocr": [
        {"t": 6.0, "text": "라운드랩 자작나무 선크림", "confidence": 0.95, "box": [0, 0, 10, 10]},
        {"t": 12.0, "text": "라운드랩 자작나무 선크림", "confidence": 0.93, "box": [0, 0, 10, 10]},
        {"t": 42.0, "text": "Logitech MX Master 3S", "confidence": 0.9, "box": [0, 0, 10, 10]},
        {"t": 60.0, "text": "다이슨 에어랩", "confidence": 0.9, "box": [0, 0, 10, 10]},
    ],
    "candidates": [],
    "error": None,
}  # fmt: skip

CHANNEL = {"subscribers": 1_000_000, "engagement_rate": 0.05, "consistency": 0.8, "authenticity": 0.9}


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = open_store(tmp_path / "analysis.db")
    yield s
    s.close()


@pytest.fixture
def coupang_server() -> Iterator[CoupangServer]:
    with CoupangServer(ACCESS_KEY, SECRET_KEY, CATALOG) as server:
        yield server


@pytest.fixture
def gemini_server() -> Iterator[GeminiServer]:
    with GeminiServer(GEMINI_KEY) as server:
        yield server


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    with SlackServer(SLACK_TOKEN) as server:
        yield server


@pytest.fixture
def sheets_server() -> Iterator[SheetsServer]:
    book = {"sheet-1": {"Review": [], "Channels": [["name", "channel_id", "keywords"],
                                                   ["셀럽A", "UC123", "셀럽A"], ["", "", ""],
                                                   ["Blog", "", ""]]}}  # fmt: skip
    with SheetsServer(SHEETS_TOKEN, book, unshared=("sheet-private",)) as server:
        yield server


class Sleeps(list):
    """A fake sleep that records the requested delays (no wall-clock waiting in tests)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def write_frames(folder, times, size=(640, 360)) -> list[dict[str, Any]]:
    """Kept frames as real JPEG files (Pillow), one per time, in part 1's ``frames`` shape."""
    from PIL import Image

    out = []
    for n, t in enumerate(times):
        path = folder / f"frame-{n:03d}.jpg"
        Image.new("RGB", size, (40 + n * 20 % 200, 120, 200)).save(path, format="JPEG")
        out.append({"t": t, "path": str(path)})
    return out
