"""Training-data validation for Azure OpenAI fine-tuning: the first thing every drop goes through.

    from shared.validation import validate, ValidationOptions, ValidationReport
    report = validate(blob.download_blob().chunks(), model="gpt-4o-mini-2024-07-18")
    report.model_dump_json()  # stored beside the run, carried by webhooks

Also `split_examples` (a deterministic train/validation split) and `convert` (CSV, TSV, XLSX, JSON,
JSONL to JSONL). The report fields and every issue code are documented in docs/validation.md.
"""

from .codes import CODES, Code
from .options import ValidationOptions
from .reading import SourceError
from .report import Distribution, Estimate, FileSummary, Issue, TokenStats, ValidationReport
from .split import SplitResult, split_examples
from .validator import DEFAULT_MODEL, validate

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
