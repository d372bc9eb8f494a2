"""`validate`: one streaming pass over a training file (and an optional validation file) to a report.

The parsing thread decodes, parses and checks each line while tokenizer threads count the previous
batches (see tokens.py). Nothing is kept per example: token figures go into histograms and sums
(`TokenFigures`), line hashes into a bounded duplicate finder (duplicates.py), so memory stays flat
whatever the file size and the number of examples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from shared import open_weight

from . import counting_process
from .codes import CODES, Code
from .counting_process import CountingProcess
from .duplicates import DuplicateFinder
from .formats import CHECKERS, ROLES, detect_format
from .issues import IssueLog
from .model_limits import DEFAULT_MODEL, DPO_MODELS, ModelProfile, profile_for, supports_dpo
from .options import ValidationOptions
from .plain_chat import plain_chat_line, role_overheads
from .reading import BOM, Source, StreamFacts, iter_chunks, iter_lines, known_size
from .reinforcement import SFT_ONLY_CODES, check_example
from .report import DataFormat, FileSummary, LineEndings, TokenStats, ValidationReport, Which
from .sensitive import CleanPrefixes, Finding, SensitiveScanner
from .statistics import estimate
from .tokens import TokenCache, TokenFigures, Tokenizer, TokenPipeline, usable_cpus

__all__ = ["DEFAULT_MODEL", "validate"]

_AGGREGATE_LINES = 10


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_raw_decode = json.JSONDecoder(parse_constant=_reject_constant).raw_decode


def _decode(text: str) -> Any:
    """json.loads for a stripped line, minus its whitespace handling (the line has none at either end)."""
    obj, end = _raw_decode(text)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


@dataclass
class _Aggregate:
    """A warning reported once for many examples: the count and the first lines."""

    count: int = 0
    lines: list[int] = field(default_factory=list)

    def add(self, line: int) -> None:
        self.count += 1
        if len(self.lines) < _AGGREGATE_LINES:
            self.lines.append(line)


@dataclass
class _Scan:
    duplicates: DuplicateFinder
    facts: StreamFacts = field(default_factory=StreamFacts)
    format: DataFormat | None = None
    examples: int = 0
    images: int = 0
    figures: TokenFigures | None = None
    no_system: _Aggregate = field(default_factory=_Aggregate)
    no_user: _Aggregate = field(default_factory=_Aggregate)
    ends_without_assistant: _Aggregate = field(default_factory=_Aggregate)


_U64 = (1 << 64) - 1


def _line_hash(data: bytes) -> int:
    """64-bit hash of a line, for duplicates within one run (Python's hash: fast, per-process seeded)."""
    return hash(data) & _U64


def _utf8_problem(data: bytes, exc: UnicodeDecodeError) -> str:
    column = len(data[: exc.start].decode("utf-8", "replace")) + 1
    bad = data[exc.start : exc.start + 1].hex()
    return (
        f"byte 0x{bad} at column {column} is not valid UTF-8 (the file may be Latin-1 or Windows-1252): "
        "re-save it as UTF-8"
    )


def _scan_file(
    source: Source,
    which: Which,
    *,
    profile: ModelProfile,
    tokenizer: Tokenizer,
    limit: int,
    cache: TokenCache,
    options: ValidationOptions,
    log: IssueLog,
    process: CountingProcess | None,
    reference: DuplicateFinder | None = None,
) -> _Scan:
    result = _Scan(DuplicateFinder(options.max_listed_warnings, reference=reference))
    facts = result.facts
    pipeline = TokenPipeline(
        tokenizer,
        options.threads,
        limit=limit,
        keep_over_limit=options.max_listed_warnings,
        cache=cache,
        process=process,
    )
    tokenizer.prime_roles(ROLES, process)
    role_tokens = tokenizer.role_tokens
    overheads = role_overheads(role_tokens)
    remember = result.duplicates.add
    scanner = SensitiveScanner(secrets=options.check_secrets, pii=options.check_pii)
    scanning = options.check_secrets or options.check_pii
    prefixes = CleanPrefixes(secrets=options.check_secrets, pii=options.check_pii)
    blank_from: int | None = None
    blank_to = 0
    first_content = True
    checker = None
    rft = options.method == "reinforcement"  # RFT data rules (reinforcement.py); no fast lane: it is SFT's
    try:
        lines = iter_lines(
            iter_chunks(source, options.chunk_size),
            facts,
            max_bytes=options.max_bytes,
            max_line_bytes=options.max_line_bytes,
        )
        for lineno, raw in lines:
            if raw is None:
                result.examples += 1
                log.add(
                    Code.LINE_TOO_LONG, lineno, f"line is longer than {options.max_line_bytes:,} bytes; skipped", which
                )
                continue
            data = raw.strip()
            if not data:
                if blank_from is None:
                    blank_from = lineno
                blank_to = lineno
                continue
            if blank_from is not None:
                span = f"line {blank_from} is" if blank_from == blank_to else f"lines {blank_from}-{blank_to} are"
                log.add(Code.BLANK_LINE, blank_from, f"{span} blank; remove blank lines between examples", which)
                blank_from = None
            if first_content:
                first_content = False
                if data[:1] == b"[":
                    log.add(
                        Code.JSON_ARRAY_FILE,
                        lineno,
                        "the file is one JSON array, not JSON Lines (one example object per line): "
                        "convert it with `python -m shared.cli convert IN.json OUT.jsonl`",
                        which,
                    )
                    break
            result.examples += 1
            if data.startswith(BOM):
                log.add(
                    Code.UNEXPECTED_BOM, lineno, "a byte-order mark starts this line: were files concatenated?", which
                )
                continue
            if result.format == "chat" and not rft:  # fast lane; None: the general path below
                plain = plain_chat_line(data, overheads)
                if plain is not None:
                    if not plain.has_user:
                        result.no_user.add(lineno)
                    if not plain.has_system:
                        result.no_system.add(lineno)
                    if not plain.ends_with_assistant:
                        result.ends_without_assistant.add(lineno)
                    if scanning:
                        skip = prefixes.length(data)
                        if not skip and plain.has_system and prefixes.learning:
                            first = plain.texts[0]
                            if len(first) >= cache.MIN_CHARS and cache.get(first) is not None:  # it repeats
                                prefixes.learn(data, first)
                        if found := scanner.add(lineno, data[skip:] if skip else data):
                            _log_findings(found, which, log)
                    remember(_line_hash(data), lineno)
                    pipeline.add(lineno, plain.messages, plain.fixed, plain.texts, plain.assistant_texts, len(data))
                    continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                log.add(Code.INVALID_UTF8, lineno, _utf8_problem(data, exc), which)
                continue
            try:
                obj = _decode(text)
            except json.JSONDecodeError as exc:
                log.add(Code.INVALID_JSON, lineno, f"invalid JSON at column {exc.colno}: {exc.msg}", which)
                continue
            except ValueError as exc:
                log.add(Code.INVALID_JSON, lineno, f"invalid JSON: {exc}", which)
                continue
            except RecursionError:
                log.add(Code.INVALID_JSON, lineno, "invalid JSON: nested too deeply", which)
                continue
            if type(obj) is not dict:
                log.add(Code.NOT_AN_OBJECT, lineno, f"each line must be a JSON object, not {_json_kind(obj)}", which)
                continue
            fmt = detect_format(obj)
            if fmt is None:
                keys = ", ".join(repr(k)[:30] for k in list(obj)[:5]) or "none"
                log.add(
                    Code.UNKNOWN_FORMAT,
                    lineno,
                    "expected 'messages' (chat), 'prompt' and 'completion' (completion) or 'input', 'preferred_output' "
                    f"and 'non_preferred_output' (preference); found keys: {keys}",
                    which,
                )
                continue
            if result.format is None:
                result.format = fmt
                checker = CHECKERS[fmt]
                if fmt not in profile.formats:
                    hint = "prompt/completion" if profile.formats == {"completion"} else "chat or preference"
                    log.add(
                        Code.FORMAT_NOT_SUPPORTED_BY_MODEL,
                        lineno,
                        f"the file is in {fmt} format but {profile.family} takes {hint} examples",
                        which,
                    )
            elif fmt != result.format:
                log.add(
                    Code.FORMAT_MISMATCH,
                    lineno,
                    f"this line is a {fmt} example but the file started as {result.format} (first example)",
                    which,
                )
                continue
            assert checker is not None
            try:
                ex = checker(obj, role_tokens)
            except RecursionError:
                log.add(Code.INVALID_JSON, lineno, "invalid JSON: nested too deeply", which)
                continue
            failed = False
            problems = ex.problems
            if rft and fmt == "chat":
                problems = [p for p in problems if p[0] not in SFT_ONLY_CODES]
                problems += check_example(obj, options.grader_fields)
            for code, message in problems:
                log.add(code, lineno, message, which)
                if not failed and _is_error(code):
                    failed = True
            if fmt != "completion":
                if not ex.has_user:
                    result.no_user.add(lineno)
                if fmt == "chat" and not rft:
                    if not ex.has_system:
                        result.no_system.add(lineno)
                    if not ex.ends_with_assistant:
                        result.ends_without_assistant.add(lineno)
            if scanning:
                _log_findings(scanner.add(lineno, data), which, log)
            remember(_line_hash(data), lineno)
            if not failed:
                result.images += ex.images
                pipeline.add(lineno, ex.messages, ex.fixed, ex.texts, ex.assistant_texts, len(data))
        _log_findings(scanner.flush(), which, log)
        result.duplicates.finish()
        result.figures = pipeline.finish()
    finally:
        pipeline.close()
    _file_level(result, which, options, log)
    return result


def _is_error(code: Code) -> bool:
    return CODES[code].severity == "error"


def _log_findings(findings: list[Finding], which: Which, log: IssueLog) -> None:
    for f in findings:
        if f.secret:
            message = f"possible {f.kind} ({f.masked}): remove it, and rotate it if it is real"
            log.add(Code.POSSIBLE_SECRET, f.line, message, which)
        else:
            log.add(Code.POSSIBLE_PII, f.line, f"{f.kind}-like text ({f.masked})", which)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _file_level(result: _Scan, which: Which, options: ValidationOptions, log: IssueLog) -> None:
    facts = result.facts
    if facts.utf16_or_32:
        log.add(
            Code.UNSUPPORTED_ENCODING,
            1,
            f"the file is {facts.utf16_or_32}: re-save it as UTF-8 (with or without a BOM)",
            which,
        )
        return
    if facts.too_large:
        log.add(
            Code.FILE_TOO_LARGE,
            None,
            f"the file is larger than {options.max_bytes:,} bytes (reading stopped there); split it",
            which,
        )
        return
    if result.examples == 0 and Code.JSON_ARRAY_FILE.value not in log.counts:
        log.add(Code.EMPTY_FILE, None, "the file holds no examples", which)
        return
    if 0 < result.examples < options.min_examples:  # every uploaded file: the service checks each one
        log.add(
            Code.TOO_FEW_EXAMPLES,
            None,
            f"{result.examples} examples; fine-tuning needs at least {options.min_examples}"
            + (" (the validation file too: the service rejects it at import)" if which == "validation" else ""),
            which,
        )
    for agg, code, text in (
        (result.no_system, Code.NO_SYSTEM_MESSAGE, "no system message"),
        (result.no_user, Code.NO_USER_MESSAGE, "no user message"),
        (result.ends_without_assistant, Code.ENDS_WITHOUT_ASSISTANT, "a last message that is not the assistant's"),
    ):
        if agg.count:
            shown = ", ".join(map(str, agg.lines)) + (", ..." if agg.count > len(agg.lines) else "")
            log.add(code, agg.lines[0], f"{agg.count} example(s) have {text} (lines {shown})", which, count=agg.count)


def _sampling_note(finder: DuplicateFinder) -> str:
    if finder.sampled_fraction >= 1.0:
        return ""
    return (
        f" (over {finder.capacity:,} distinct lines: duplicates looked for in a {finder.sampled_fraction:.3g} "
        "sample of them, chosen by content)"
    )


def _duplicates(result: _Scan, which: Which, log: IssueLog) -> None:
    finder = result.duplicates
    note = _sampling_note(finder)
    for line, first in finder.first:
        log.add(Code.DUPLICATE_EXAMPLE, line, f"duplicate of line {first}{note}", which)
    log.add_count(Code.DUPLICATE_EXAMPLE, finder.found - len(finder.first))


def _overlap(valid: _Scan, log: IssueLog) -> None:
    finder = valid.duplicates
    note = _sampling_note(finder.reference) if finder.reference is not None else ""
    for line, train_line in finder.first_overlaps:
        log.add(
            Code.TRAIN_VALIDATION_OVERLAP,
            line,
            f"also in the training file (line {train_line}): validation examples should be unseen{note}",
            "validation",
        )
    log.add_count(Code.TRAIN_VALIDATION_OVERLAP, finder.overlaps - len(finder.first_overlaps))


def _token_stats(result: _Scan, which: Which, tokenizer: Tokenizer, limit: int, log: IssueLog) -> TokenStats | None:
    figures = result.figures
    if figures is None or result.format is None:
        return None
    for line, n in figures.over_limit_first:
        log.add(
            Code.TOKENS_OVER_LIMIT,
            line,
            f"{n:,} tokens, over the {limit:,}-token limit per example: the last {n - limit:,} will be truncated",
            which,
        )
    log.add_count(Code.TOKENS_OVER_LIMIT, figures.over_limit - len(figures.over_limit_first))
    return TokenStats(
        tokenizer=tokenizer.name,
        tokens_per_example_limit=limit,
        total=figures.total,
        billed_per_epoch=figures.billed,
        examples_over_limit=figures.over_limit,
        image_parts=result.images,
        messages_per_example=figures.messages.distribution(),
        tokens_per_example=figures.tokens.distribution(),
        assistant_tokens_per_example=figures.assistant_tokens.distribution(),
    )


def _encoding(facts: StreamFacts) -> Any:
    if facts.utf16_or_32 or facts.bytes_read == 0:
        return None
    return "utf-8-bom" if facts.bom else "utf-8"


def validate(
    training: Source,
    *,
    validation: Source | None = None,
    model: str = DEFAULT_MODEL,
    options: ValidationOptions | None = None,
    process: CountingProcess | None = None,
) -> ValidationReport:
    """Validate a training file (and a validation file) for fine-tuning `model`; never holds the files.

    `training` / `validation`: a binary file-like (`.read(n)`), an iterable of `bytes` chunks (a blob's
    `download_blob().chunks()`), or `bytes`. Errors raised by the stream itself (network, disk) propagate,
    so a caller can retry; everything about the content is in the report.

    `process`: a counting process the caller forked for `model`'s encoding (the CLI does, before it loads
    the report's models: counting_process.py); `validate` closes it. Without one, `validate` forks one
    itself where that pays and is safe (`ValidationOptions.counting_process`).
    """
    options = options or ValidationOptions()
    profile = profile_for(model)
    tokenizer = Tokenizer(profile.tokenizer)
    if process is None and counting_process.wanted(
        options.counting_process, known_size(training), TokenPipeline.BATCH_CHARS, usable_cpus()
    ):
        process = CountingProcess(tokenizer)
    try:
        return _validate(training, validation, model, options, profile, tokenizer, process)
    finally:
        if process is not None:
            process.close()


def _validate(
    training: Source,
    validation: Source | None,
    model: str,
    options: ValidationOptions,
    profile: ModelProfile,
    tokenizer: Tokenizer,
    process: CountingProcess | None,
) -> ValidationReport:
    limit = options.tokens_per_example_limit or profile.tokens_per_example_limit
    log = IssueLog(options.max_listed_errors, options.max_listed_warnings)
    # Open-weight models (shared/open_weight.py) are fine-tunable but have no entry (their tokenizers are not
    # tiktoken's): a warning that says what was assumed, never model_not_known.
    if not profile.known and (options.allow_unknown_model or open_weight.find(model) is not None):
        log.add(
            Code.UNKNOWN_MODEL,
            None,
            f"model {model!r} is not in the limits table: assumed o200k_base and {limit:,} tokens per example",
        )
    elif not profile.known:
        log.add(
            Code.MODEL_NOT_KNOWN,
            None,
            f"model {model!r} is not a model this validator knows (neither a base model in its table nor a "
            f"fine-tune of one); name a base model such as {DEFAULT_MODEL}",
        )
    kwargs: dict[str, Any] = {
        "profile": profile,
        "tokenizer": tokenizer,
        "limit": limit,
        "cache": TokenCache(),
        "options": options,
        "log": log,
        "process": process,
    }
    train = _scan_file(training, "training", **kwargs)
    if train.format == "preference" and profile.known and not supports_dpo(model):
        log.add(
            Code.METHOD_NOT_SUPPORTED,
            None,
            f"the file is preference (DPO) data, but {model} cannot be trained with DPO; the DPO how-to lists "
            f"{', '.join(DPO_MODELS)} and fine-tunes of them",
        )
    valid = None
    if validation is not None:
        valid = _scan_file(validation, "validation", reference=train.duplicates, **kwargs)
    _duplicates(train, "training", log)
    train_tokens = _token_stats(train, "training", tokenizer, limit, log)
    summary = None
    if valid is not None:
        _duplicates(valid, "validation", log)
        _overlap(valid, log)
        if valid.format and train.format and valid.format != train.format:
            log.add(
                Code.FORMAT_MISMATCH,
                1,
                f"the validation file is in {valid.format} format but the training file in {train.format}",
                "validation",
            )
        summary = FileSummary(
            format=valid.format,
            encoding=_encoding(valid.facts),
            line_endings=cast(LineEndings, valid.facts.line_endings),
            bytes=valid.facts.bytes_read,
            examples=valid.examples,
            tokens=_token_stats(valid, "validation", tokenizer, limit, log),
        )
    est = None
    if train_tokens is not None:
        est = estimate(
            train.examples,
            train_tokens.billed_per_epoch,
            n_epochs=options.n_epochs,
            price_per_million_tokens=options.price_per_million_tokens,
        )
    return ValidationReport(
        valid=log.error_count == 0,
        model=model,
        format=train.format,
        encoding=_encoding(train.facts),
        line_endings=cast(LineEndings, train.facts.line_endings),
        bytes=train.facts.bytes_read,
        examples=train.examples,
        error_count=log.error_count,
        warning_count=log.warning_count,
        counts=dict(sorted(log.counts.items())),
        errors=log.listed("error"),
        warnings=log.listed("warning"),
        tokens=train_tokens,
        estimate=est,
        validation=summary,
    )
