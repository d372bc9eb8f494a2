"""Training-data validation for Azure OpenAI fine-tuning: the first thing every drop goes through.

    from shared.validation import validate, ValidationOptions, ValidationReport
    report = validate(blob.download_blob().chunks(), model="gpt-4o-mini-2024-07-18")
    report.model_dump_json()  # stored beside the run, carried by webhooks

Also `split_examples` (a deterministic train/validation split) and `convert` (CSV, TSV, XLSX, JSON,
JSONL to JSONL). The report fields and every issue code are documented in docs/validation.md.

Importing this package is light (pydantic models only): numpy, tiktoken and the validator load on the first
`validate` call, so a cold start that never validates (a timer tick, an HTTP read) does not pay for them.
"""

from __future__ import annotations

from .codes import CODES, Code
from .model_limits import DEFAULT_MODEL
from .options import ValidationOptions
from .reading import Source, SourceError
from .report import Distribution, Estimate, FileSummary, Issue, TokenStats, ValidationReport
from .split import SplitResult, split_examples


def validate(
    training: Source,
    *,
    validation: Source | None = None,
    model: str = DEFAULT_MODEL,
    options: ValidationOptions | None = None,
) -> ValidationReport:
    """`shared.validation.validator.validate` (see there), imported on first use."""
    from .validator import validate as run

    return run(training, validation=validation, model=model, options=options)


__all__ = [
    "CODES",
    "DEFAULT_MODEL",
    "Code",
    "Distribution",
    "Estimate",
    "FileSummary",
    "Issue",
    "SourceError",
    "SplitResult",
    "TokenStats",
    "ValidationOptions",
    "ValidationReport",
    "split_examples",
    "validate",
]
