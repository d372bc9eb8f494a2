"""The validation report: what the pipeline stores beside each run and what webhooks carry.

Field names are a contract (see docs/validation.md); add fields, never rename them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REPORT_SCHEMA_VERSION = 1

DataFormat = Literal["chat", "completion", "preference"]
FileEncoding = Literal["utf-8", "utf-8-bom"]
LineEndings = Literal["lf", "crlf", "mixed", "none"]
Which = Literal["training", "validation"]


class Issue(BaseModel):
    """One error or warning. `line` is 1-based; null only for whole-file issues (see the codes table)."""

    model_config = ConfigDict(frozen=True)

    line: int | None
    code: str
    message: str
    file: Which = "training"


class Distribution(BaseModel):
    """Summary of one per-example quantity. Percentiles interpolate linearly (numpy's default)."""

    min: float
    mean: float
    median: float
    p10: float
    p90: float
    max: float


class TokenStats(BaseModel):
    """Exact token counts (tiktoken) under the convention written in docs/validation.md."""

    tokenizer: str
    tokens_per_example_limit: int
    total: int
    billed_per_epoch: int = Field(description="sum over examples of min(tokens, limit)")
    examples_over_limit: int
    image_parts: int = Field(description="image parts, each counted as 85 tokens (a lower bound)")
    messages_per_example: Distribution | None
    tokens_per_example: Distribution | None
    assistant_tokens_per_example: Distribution | None


class Estimate(BaseModel):
    """Training cost estimate: billed tokens = billed_per_epoch x n_epochs."""

    n_epochs: int
    epochs_source: Literal["default", "option"]
    billed_tokens: int
    price_per_million_tokens: float | None
    cost: float | None


class FileSummary(BaseModel):
    """Facts about the validation file (the training file's are the report's top-level fields)."""

    format: DataFormat | None
    encoding: FileEncoding | None
    line_endings: LineEndings
    bytes: int
    examples: int
    tokens: TokenStats | None


class ValidationReport(BaseModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    valid: bool
    model: str
    format: DataFormat | None
    encoding: FileEncoding | None = Field(description="utf-8, or utf-8-bom when the file starts with a BOM")
    line_endings: LineEndings
    bytes: int
    examples: int
    error_count: int
    warning_count: int
    counts: dict[str, int] = Field(description="issues per code, all of them, listed or not")
    errors: list[Issue]
    warnings: list[Issue]
    tokens: TokenStats | None
    estimate: Estimate | None
    validation: FileSummary | None = None
