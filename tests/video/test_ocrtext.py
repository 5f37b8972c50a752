"""OCR post-processing: Hangul ratio, the noise filter, merging engines, tesseract TSV parsing."""

from __future__ import annotations

from stageflow.plugins.ocr import parse_tsv

from stageflow.video.ocrtext import NoiseFilter, hangul_ratio, make_text, merge


def test_hangul_ratio():
    assert hangul_ratio("안녕하세요") == 1.0
    assert hangul_ratio("세일 SALE") == 0.333
    assert hangul_ratio("50%!") == 0.0


def test_noise_filter():
    keep = NoiseFilter(min_confidence=0.5, min_chars=2).keep
    assert keep(make_text(0, "SALE", 0.9, (0, 0, 1, 1), "x"))
    assert not keep(make_text(0, "SALE", 0.3, (0, 0, 1, 1), "x"))  # unsure
    assert not keep(make_text(0, "I", 0.9, (0, 0, 1, 1), "x"))  # too short
    assert not keep(make_text(0, "--..", 0.9, (0, 0, 1, 1), "x"))  # no letter or digit


def test_merge_keeps_the_more_confident_read_of_one_place():
    a = make_text(1.0, "SALE", 0.7, (10, 10, 100, 40), "rapidocr")
    b = make_text(1.0, "SALE!", 0.9, (12, 11, 98, 41), "tesseract")
    c = make_text(1.0, "세일", 0.8, (10, 100, 100, 130), "tesseract")
    d = make_text(2.0, "SALE", 0.6, (10, 10, 100, 40), "rapidocr")
    assert [(m.t, m.text) for m in merge([[a, d], [b, c]])] == [(1.0, "SALE!"), (1.0, "세일"), (2.0, "SALE")]


def test_parse_tesseract_tsv_groups_words_into_lines():
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "5\t1\t1\t1\t1\t1\t10\t20\t30\t10\t90\t오늘",
        "5\t1\t1\t1\t1\t2\t50\t22\t40\t10\t80\t특가",
        "5\t1\t1\t1\t2\t1\t10\t60\t30\t10\t-1\t ",
        "4\t1\t1\t1\t2\t0\t10\t60\t30\t10\t-1\t",
    ]
    [line] = parse_tsv("\n".join([header, *rows]), 3.0)
    assert (line.text, line.t, line.box) == ("오늘 특가", 3.0, (10.0, 20.0, 90.0, 32.0))
    assert line.confidence == 0.85
