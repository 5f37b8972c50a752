"""OCR on text regions: rapidocr's detector finds the caption boxes once, tesseract (--psm 7) and
rapidocr read each crop, the garbage filter drops texture reads, and reads over frames fold into one
item per text per on-screen interval."""

from __future__ import annotations

import os

import numpy as np
import pytest

from stageflow.stages import Frame, OcrText
from stageflow.video.ocrtext import NoiseFilter, make_text, script_share
from stageflow.video.regions import read_regions, spans

NANUM_BOLD = "/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf"


def _frame(captions, size=(1280, 720), seed=0) -> np.ndarray:
    """A 720p frame: photo-like texture (smooth blobs + grain) with captions in white boxes."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(60, 200, (h // 40, w // 40, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(6))
    arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 12, (h, w, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for text, (x, y), px in captions:
        font = ImageFont.truetype(NANUM_BOLD, px)
        box = draw.textbbox((x, y), text, font=font)
        draw.rectangle((box[0] - 14, box[1] - 12, box[2] + 14, box[3] + 12), fill=(255, 255, 255))
        draw.text((x, y), text, fill=(10, 10, 10), font=font)
    return np.asarray(img)


@pytest.fixture(scope="module")
def engines():
    from stageflow.plugins.ocr import RapidOcrConfig, RapidOcrEngine, TesseractConfig, TesseractEngine

    if not os.path.isfile(NANUM_BOLD):
        pytest.skip("fonts-nanum is not installed (apt-get install fonts-nanum)")
    return RapidOcrEngine(RapidOcrConfig()), TesseractEngine(TesseractConfig())


def test_captions_are_read_exactly_from_their_boxes_and_texture_gives_nothing(engines):
    rapid, tess = engines
    image = _frame([("라운드랩 독도 토너", (300, 500), 64), ("DISCOUNT 30%", (420, 90), 56)])
    reads = read_regions([Frame(2.0, 60, image, 100.0)], rapid, [tess, rapid])
    assert [r.text for r in reads] == ["DISCOUNT 30%", "라운드랩 독도 토너"]
    korean = reads[1]
    assert korean.engine == "tesseract" and korean.hangul_ratio == 1.0 and korean.t == 2.0
    assert 280 <= korean.box[0] < 320 and 490 <= korean.box[1] < 520  # the caption's box
    plain = read_regions([Frame(0.0, 0, _frame([], seed=3), 100.0)], rapid, [tess, rapid])
    assert plain == []  # no junk lines from the texture


def test_tesseract_thread_limit_is_only_in_its_subprocess(engines):
    _, tess = engines
    assert tess.env["OMP_THREAD_LIMIT"] == "1"
    assert "OMP_THREAD_LIMIT" not in os.environ  # faster-whisper returns no segments with it set


def test_tesseract_reads_a_batch_of_crops_in_order(engines):
    _, tess = engines
    from stageflow.video.regions import crop

    image = _frame([("독도 토너", (100, 100), 48), ("SALE 50", (700, 400), 48)])
    rapid = engines[0]
    boxes = sorted(rapid.detect_boxes(image), key=lambda b: b[1])
    texts = [t for t, _ in tess.recognise([crop(image, b) for b in boxes])]
    assert texts == ["독도 토너", "SALE 50"]


def test_garbage_filter_wants_hangul_latin_or_digits():
    keep = NoiseFilter(0.5, 2, 0.6).keep
    assert script_share("라운드랩 50%") == pytest.approx(6 / 7)
    assert keep(make_text(0, "라운드랩", 0.9, (0, 0, 1, 1), "t"))
    assert not keep(make_text(0, "|=~_-'", 0.9, (0, 0, 1, 1), "t"))  # texture punctuation
    assert not keep(make_text(0, "丁口山'", 0.9, (0, 0, 1, 1), "t"))  # stray CJK from a Latin model
    assert not keep(make_text(0, "a", 0.99, (0, 0, 1, 1), "t"))


def _read(t, text, x=100.0):
    return OcrText(t, text, 0.9, (x, 100.0, x + 300, 150.0), "tesseract", 0.0)


def test_spans_fold_one_text_per_on_screen_interval():
    reads = [
        _read(2.0, "DOKDO TONER"),
        _read(4.0, "DOKD0 TONER"),  # one letter misread: the same caption
        _read(6.0, "DOKDO TONER"),
        _read(4.0, "SALE", x=800.0),
        _read(20.0, "DOKDO TONER"),  # back after a long gap: a second interval
    ]
    got = [(s.text, s.first_t, s.last_t, s.frames) for s in spans(reads, max_gap_s=5.0)]
    assert got == [
        ("DOKDO TONER", 2.0, 6.0, 3),
        ("SALE", 4.0, 4.0, 1),
        ("DOKDO TONER", 20.0, 20.0, 1),
    ]
    assert spans([]) == []


def _jpeg(image: np.ndarray, quality: int = 80) -> np.ndarray:
    """``image`` through a JPEG round trip: the codec noise a repeated video frame carries."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


class Counting:
    """A real engine that counts its detector calls and the crops it is asked to recognise."""

    def __init__(self, engine):
        self.engine, self.name, self.filter = engine, engine.name, engine.filter
        self.detections, self.crops = 0, 0

    def detect_boxes(self, image):
        self.detections += 1
        return self.engine.detect_boxes(image)

    def recognise(self, crops):
        self.crops += len(crops)
        return self.engine.recognise(crops)


def test_a_repeated_frame_reuses_boxes_and_reads_and_a_changed_caption_is_read_again(engines):
    from stageflow.video.regions import RegionCache

    rapid, tess = engines
    captions = [("라운드랩 독도 토너", (300, 500), 64), ("DISCOUNT 30%", (420, 90), 56)]
    first = _frame(captions)
    again = _jpeg(first)  # the same picture, with codec noise
    changed = _frame([captions[0], ("DISCOUNT 70%", (420, 90), 56)])  # one caption changes a digit
    added = _frame([*captions, ("NEW ITEM", (80, 300), 48)])  # a new caption appears
    det, rec = Counting(rapid), Counting(tess)
    cache = RegionCache()
    frames = [Frame(t, i, im, 100.0) for i, (t, im) in enumerate([(2.0, first), (4.0, again)])]
    reads = read_regions(frames, det, [rec, rapid], refs={1: 0}, cache=cache)
    assert [(r.t, r.text) for r in reads] == [
        (2.0, "DISCOUNT 30%"),
        (2.0, "라운드랩 독도 토너"),
        (4.0, "DISCOUNT 30%"),
        (4.0, "라운드랩 독도 토너"),
    ]
    assert (det.detections, rec.crops) == (1, 2)  # the repeat was neither detected nor recognised
    assert cache.stats()["crops_reusing_reads"] == 2
    reads = read_regions([Frame(6.0, 2, changed, 100.0)], det, [rec, rapid], refs={2: 0}, cache=cache)
    assert [r.text for r in reads] == ["DISCOUNT 70%", "라운드랩 독도 토너"]
    assert rec.crops == 3  # only the changed caption's crop was read again
    reads = read_regions([Frame(8.0, 3, added, 100.0)], det, [rec, rapid], refs={3: 0}, cache=cache)
    assert [r.text for r in reads] == ["DISCOUNT 30%", "NEW ITEM", "라운드랩 독도 토너"]
    assert det.detections == 3  # the changed frame and the one with a new caption were detected again


def test_a_small_caption_is_found_on_the_downscaled_detector_frame(engines):
    rapid, tess = engines
    assert rapid.config.det_max_side == 640
    image = _frame([("free shipping today", (100, 600), 24)])  # 24 px text: ~12 px at 640
    reads = read_regions([Frame(0.0, 0, image, 100.0)], rapid, [tess, rapid])
    assert [r.text for r in reads] == ["free shipping today"]
    assert 85 <= reads[0].box[0] <= 100 and 590 <= reads[0].box[1] <= 605


def _tsv(rows) -> str:
    head = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    body = [f"5\t1\t1\t1\t1\t{i}\t{x}\t{y}\t{w}\t{h}\t93.0\t{t}" for i, (t, x, y, w, h) in enumerate(rows)]
    return "\n".join([head, *body])


def test_tesseract_line_words_join_into_the_captions_words():
    from stageflow.plugins.ocr import parse_tsv_lines, space_after

    # tesseract's TSV of real caption crops (Nanum Gothic Bold). 48 px: syllables split into words,
    # two of them given the crop's full height; spaces of 17 and 24 px
    small = [
        ("라", 8, 8, 182, 47),
        ("운", 66, 0, 43, 62),
        ("드", 108, 8, 48, 47),
        ("랩", 155, 0, 32, 62),
        ("독도", 211, 8, 92, 47),
        ("토너", 320, 8, 88, 47),
    ]
    assert parse_tsv_lines(_tsv(small), 1) == [("라운드랩 독도 토너", 0.93)]
    # 96 px: syllable gaps of 30 px are wider than the 48 px caption's spaces; the space is 45 px
    large = [
        ("자", 5, 6, 89, 95),
        ("작", 124, 6, 66, 95),
        ("나무", 221, 6, 152, 95),
        ("선크림", 418, 6, 268, 95),
    ]
    assert parse_tsv_lines(_tsv(large), 1) == [("자작나무 선크림", 0.93)]
    # 64 px: syllable gaps 15-16 px under the cut, spaces 20 and 27 px
    assert space_after([15, 16, 16, 27, 20], 59) == [False, False, False, True, True]
    assert space_after([20, 21], 47) == [True, True]  # English words: even gaps, each a space
    assert space_after([3], 47) == [False] and space_after([15], 47) == [True]
