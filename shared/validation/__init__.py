"""Training-data validation for Azure OpenAI fine-tuning: the first thing every drop goes through.

    from shared.validation import validate, ValidationOptions, ValidationReport
    report = validate(blob.download_blob().chunks(), model="gpt-4o-mini-2024-07-18")
    report.model_dump_json()  # stored beside the run, carried by webhooks

Also `split_examples` (a deterministic train/validation split) and `convert` (CSV, TSV, XLSX, JSON,
JSONL to JSONL). The report fields and every issue code are documented in docs/validation.md.

Importing this package loads nothing: each name loads its module on first use, so a cold start that never
validates (a timer tick, an HTTP read) does not pay for numpy, tiktoken or the validator, and a caller may
load the counting side (tokens.py: numpy, tiktoken) without the report's pydantic models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .model_limits import DEFAULT_MODEL  # light (no pydantic): the default of `validate` below

if TYPE_CHECKING:
    from .codes import CODES, Code
    from .counting_process import CountingProcess
    from .options import ValidationOptions
    from .reading import Source, SourceError
    from .report import Distribution, Estimate, FileSummary, Issue, TokenStats, ValidationReport
    from .split import SplitResult, split_examples

# Each public name, from the module it lives in: loaded on first use (PEP 562), so that importing one module of
# the package (the CLI forks its counting process after numpy and tiktoken, before pydantic) loads only that one.
_HOMES = {
    "CODES": "codes",
    "Code": "codes",
    "ValidationOptions": "options",
    "Source": "reading",
    "SourceError": "reading",
    "Distribution": "report",
    "Estimate": "report",
    "FileSummary": "report",
    "Issue": "report",
    "TokenStats": "report",
    "ValidationReport": "report",
    "SplitResult": "split",
    "split_examples": "split",
}


def validate(
    training: Source,
    *,
    validation: Source | None = None,
    model: str = DEFAULT_MODEL,
    options: ValidationOptions | None = None,
    process: CountingProcess | None = None,
) -> ValidationReport:
    """`shared.validation.validator.validate` (see there), imported on first use: no name of this package
    loads numpy or tiktoken until `validate` is called."""
    from .validator import validate as run

    return run(training, validation=validation, model=model, options=options, process=process)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CODES",
    "DEFAULT_MODEL",
    "Code",
    "Distribution",
    "Estimate",
    "FileSummary",
    "Issue",
    "Source",
    "SourceError",
    "SplitResult",
    "TokenStats",
    "ValidationOptions",
    "ValidationReport",
    "split_examples",
    "validate",
]
