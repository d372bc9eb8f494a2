"""Knobs of a validation run; the defaults follow the Azure OpenAI limits (docs/azure-openai-contract.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


class ValidationOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_bytes: int = Field(512 * MIB, gt=0, description="files above this are rejected (service limit: 512 MB)")
    max_line_bytes: int = Field(32 * MIB, gt=0, description="longer lines are skipped unread (bounds memory)")
    max_listed_errors: int = Field(100, ge=0, description="errors listed; counting goes on past it")
    max_listed_warnings: int = Field(100, ge=0, description="warnings listed; counting goes on past it")
    min_examples: int = Field(10, ge=0, description="in every file that is uploaded: training and validation")
    allow_unknown_model: bool = Field(
        False,
        description="a model missing from the limits table is a warning (the pipeline: the service's model list "
        "has vouched for it), not an error (the CLI: nothing else can tell a typo from a model)",
    )
    tokens_per_example_limit: int | None = Field(None, gt=0, description="overrides the model table")
    price_per_million_tokens: float | None = Field(None, ge=0, description="training price; enables `cost`")
    n_epochs: int | None = Field(None, gt=0, description="overrides the default-epochs rule")
    method: Literal["supervised", "dpo", "reinforcement"] | None = Field(
        None, description="reinforcement: RFT data rules (shared/validation/reinforcement.py) instead of SFT's"
    )
    grader_fields: tuple[tuple[str, ...], ...] = Field(
        (), description="RFT: the `{{item.<path>}}` fields the grader reads; every example must have each"
    )
    check_secrets: bool = True
    check_pii: bool = True
    threads: int | None = Field(None, gt=0, description="tokenizer threads; default: usable CPUs (max 4)")
    counting_process: bool | None = Field(
        None,
        description="count tokens in a forked process on another core (counting_process.py); None: for a file "
        "or bytes of more than one batch, where it is safe (os.fork, 2+ usable CPUs, no other thread running)",
    )
    chunk_size: int = Field(1 * MIB, gt=0, description="bytes read per `.read(n)` call")
