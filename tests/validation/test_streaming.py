"""Sources: file-likes, chunk iterables (a blob's `.chunks()`), bytes; and the validation-file checks."""

from __future__ import annotations

import io

import pytest

from shared.validation import ValidationOptions, validate
from shared.validation.reading import SourceError

from .examples import chat, jsonl

DATA = jsonl([chat(i) for i in range(30)])


class Blob:
    """Stands in for azure-storage-blob's StorageStreamDownloader: only `.chunks()` is used."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size
        self.served = 0

    def chunks(self):  # type: ignore[no-untyped-def]
        for i in range(0, len(self.data), self.size):
            self.served += 1
            yield self.data[i : i + self.size]


def test_same_report_from_every_kind_of_source() -> None:
    blob = Blob(DATA, 100)
    reports = [validate(DATA), validate(io.BytesIO(DATA)), validate(blob.chunks()), validate(bytearray(DATA))]
    assert all(r == reports[0] for r in reports)
    assert blob.served == len(DATA) // 100 + 1


def test_reading_stops_at_the_size_limit() -> None:
    blob = Blob(DATA * 100, 1000)
    report = validate(blob.chunks(), options=ValidationOptions(max_bytes=5000))
    assert report.counts == {"file_too_large": 1}
    assert blob.served <= 6


def test_text_stream_is_refused() -> None:
    with pytest.raises(SourceError, match="binary"):
        validate(io.StringIO("{}"))  # type: ignore[arg-type]


def test_validation_file_is_checked_and_compared() -> None:
    valid = jsonl([chat(i) for i in range(25, 40)]) + b"{bad\n"
    report = validate(DATA, validation=valid)
    assert not report.valid
    assert report.validation is not None and report.validation.examples == 16
    overlap = [w for w in report.warnings if w.code == "train_validation_overlap"]
    assert [(w.line, w.file) for w in overlap] == [(i, "validation") for i in range(1, 6)]
    assert [(e.code, e.line, e.file) for e in report.errors] == [("invalid_json", 16, "validation")]


def test_validation_file_in_another_format() -> None:
    report = validate(DATA, validation=jsonl([{"prompt": "p", "completion": str(i)} for i in range(10)]))
    assert "format_mismatch" in report.counts and "format_not_supported_by_model" in report.counts


def test_report_json_round_trip() -> None:
    from shared.validation import ValidationReport

    report = validate(DATA, options=ValidationOptions(price_per_million_tokens=3.0))
    again = ValidationReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert again.estimate is not None and again.estimate.cost is not None
