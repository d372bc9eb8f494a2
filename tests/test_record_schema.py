"""A record written by the previous version (schema 1) still loads, into today's types.

tests/data/records/schema1-deployed.json is the demo run record written by commit c13241e (two warnings
in that version's string form added by hand, since the demo run had none).
"""

from __future__ import annotations

from pathlib import Path

from shared.runs import RunRecord, RunState

SCHEMA_1 = Path(__file__).resolve().parent / "data" / "records" / "schema1-deployed.json"


def test_schema_1_record_loads_with_typed_files_warnings_metrics_and_gate() -> None:
    record = RunRecord.model_validate_json(SCHEMA_1.read_bytes())
    assert record.state == RunState.DEPLOYED and record.terminal
    training, validation = record.files.training, record.files.validation
    assert training.blob is not None and str(training.blob) == "training-data/support.jsonl"
    assert training.blob.snapshot  # the pinned snapshot that was validated
    assert training.file_id and training.status == "processed"
    assert validation.file_id and validation.filename and validation.filename.endswith("-validation.jsonl")
    assert record.files.imported
    assert record.warnings and all(w.code == "note" for w in record.warnings)
    assert record.metrics is not None and record.metrics.final_train_loss is not None
    assert record.gate is not None and record.gate.passed
    # written back in today's shape, it loads the same
    again = RunRecord.model_validate_json(record.model_dump_json())
    assert again.files == record.files and again.warnings == record.warnings and again.schema_version == 2
