"""Part 1's record and part 2's evidence share one model per item (transcript line, detection, OCR
read, on-screen text): the record built from the media stages' dataclasses feeds the analysis with no
conversion, and rows stored by earlier versions load and write back unchanged."""

from __future__ import annotations

import json

from stageflow.contracts import analysis as contract
from stageflow.contracts import media
from stageflow.video.decode import MediaInfo
from stageflow.video.pipeline.records import DecodedJob, Inference, VideoRecord, VideoRef

#: A record as part 1 wrote it before the items were the contract's models (``Line``, ``Seen``,
#: ``Read``, ``TextSpan``), including a read without a box (``[]``).
OLD_ROW = {
    "id": "file:0123456789abcdef",
    "input": "talk.mp4",
    "source": "file",
    "title": "talk",
    "duration_s": 6.0,
    "frames_decoded": 60,
    "frames_kept": 3,
    "transcript": [{"start": 0.0, "end": 1.3, "text": "hello"}],
    "detections": [{"t": 2.5, "label": "bottle", "confidence": 0.71, "box": [10.0, 20.0, 90.0, 160.0]}],
    "ocr": [
        {"t": 2.5, "text": "DISCOUNT", "confidence": 0.99, "box": [183.0, 150.0, 457.0, 196.0]},
        {"t": 3.0, "text": "SALE", "confidence": 0.5, "box": []},
    ],
    "texts": [
        {
            "text": "DISCOUNT",
            "first_t": 2.5,
            "last_t": 6.5,
            "confidence": 0.99,
            "box": [183.0, 150.0, 457.0, 196.0],
            "engine": "rapidocr",
            "hangul_ratio": 0.0,
            "frames": 3,
        }
    ],
    "candidates": [],
    "error": None,
    "timings_s": {"decode": 0.4},
    "skipped": None,
}


def test_the_old_names_are_the_one_definition():
    assert contract.SegmentIn is contract.TranscriptLine
    assert contract.DetectionIn is contract.DetectedObject
    assert contract.OcrIn is contract.OcrRead
    assert contract.TextIn is contract.OnScreenText
    fields = VideoRecord.model_fields
    assert fields["transcript"].annotation == list[contract.TranscriptLine]
    assert fields["detections"].annotation == list[contract.DetectedObject]
    assert fields["ocr"].annotation == list[contract.OcrRead]
    assert fields["texts"].annotation == list[contract.OnScreenText]


def test_a_stored_row_of_an_earlier_version_loads_and_writes_back_byte_identical():
    record = VideoRecord.model_validate(json.loads(json.dumps(OLD_ROW)))
    assert record.ocr[1].box is None  # no box, as the analysis reads it
    assert json.dumps(record.to_dict(), ensure_ascii=False) == json.dumps(OLD_ROW, ensure_ascii=False)


def test_the_record_from_the_stage_outputs_feeds_the_evidence_as_it_is():
    segment = media.Segment(0.0, 1.3, "hello", (media.Word(0.0, 0.5, "hello", 0.9),))
    detection = media.Detection(2.5, "bottle", 0.71, (10.0, 20.0, 90.0, 160.0))
    read = media.OcrText(2.5, "DISCOUNT", 0.99, (183.0, 150.0, 457.0, 196.0), "rapidocr", 0.0)
    result = Inference(
        transcript=media.Transcript("en", 6.0, (segment,)),
        detections=[detection],
        ocr=[read],
        texts=media.spans([read]),
    )
    info = MediaInfo("talk.mp4", 6.0, True, True, 640, 360)
    job = DecodedJob(video_id="v", source="file", title="talk", path="talk.mp4", workdir="/tmp", info=info)
    ref = VideoRef(id="v", source="file", title="talk", location="talk.mp4")
    record = VideoRecord.of(ref, job, result)
    doc = record.to_dict()
    assert doc["transcript"] == [{"start": 0.0, "end": 1.3, "text": "hello"}]  # words stay in the stage
    assert doc["detections"] == [
        {"t": 2.5, "label": "bottle", "confidence": 0.71, "box": [10.0, 20.0, 90.0, 160.0]}
    ]
    assert doc["ocr"] == [
        {"t": 2.5, "text": "DISCOUNT", "confidence": 0.99, "box": [183.0, 150.0, 457.0, 196.0]}
    ]
    assert doc["texts"] == [{**result.texts[0].to_dict()}]
    evidence = contract.VideoEvidence.from_part1(dict(record))
    assert evidence.transcript[0] is record.transcript[0]
    assert evidence.detections[0] is record.detections[0]
    assert evidence.texts[0] is record.texts[0]
    # a record without texts (stored before part 1 folded them) folds its reads, as a saved document does
    folded = contract.VideoEvidence.from_part1(dict(record.model_copy(update={"texts": []})))
    assert folded.texts == contract.VideoEvidence.from_part1(record.to_dict() | {"texts": []}).texts
    assert [x.text for x in folded.texts] == ["DISCOUNT"]
