"""Command line for people preparing a drop: `python -m shared.cli SUBCOMMAND ...`.

    python -m shared.cli validate PATH [--validation PATH] [--model MODEL] [--json]
    python -m shared.cli convert IN OUT [--model MODEL] [--split FRACTION] [--validation-out PATH]

Exit status: 0 success (valid), 1 the data is invalid or cannot be converted (or a run command was refused:
no such run, already dropped), 2 unusable arguments or the command cannot run (an unreadable path, a missing
`--settings` file, storage out of reach, tokenizer encodings unavailable offline). Expected failures are one
line on stderr, never a traceback. One function per subcommand (`cmd_<name>`), registered in
`build_parser`; add a subcommand by adding a `_add_<name>` that sets `func`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

if TYPE_CHECKING:
    from shared.validation.counting_process import CountingProcess

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class _Usage(Exception):
    """Unusable arguments or an unreadable path: exit 2."""


def _fraction(value: str) -> float:
    try:
        f = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from exc
    if not 0.0 < f < 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1 (exclusive)")
    return f


def _readable(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise _Usage(f"{path}: is a folder, not a file")
    if not p.is_file():
        raise _Usage(f"{path}: no such file")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise _Usage(f"{path}: cannot be read ({exc.strerror})") from exc
    return p


# ---- validate ---------------------------------------------------------------------------------------


def _add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check a JSONL training file before dropping it")
    p.add_argument("path", help="training file (JSONL)")
    p.add_argument("--validation", metavar="PATH", help="validation file (JSONL)")
    p.add_argument("--model", default=None, help="target base model (default: gpt-4o-mini-2024-07-18)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of a summary")
    p.add_argument("--max-bytes", type=int, metavar="N", help="file size limit in bytes (default 512 MB)")
    p.add_argument("--min-examples", type=int, metavar="N", help="minimum examples (default 10)")
    p.add_argument("--max-listed", type=int, metavar="N", help="errors and warnings listed (default 100)")
    p.add_argument("--tokens-limit", type=int, metavar="N", help="tokens per example (default: per model)")
    p.add_argument("--price", type=float, metavar="USD", help="price per million training tokens")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs for the estimate (default: the service rule)")
    p.add_argument("--rft-grader", metavar="FILE", help="reinforcement fine-tuning: the grader (JSON) the data is "
                   "checked against (RFT data rules, every field the grader reads on every line)")
    p.set_defaults(func=cmd_validate)


def _rft_options(path: str) -> dict[str, Any]:
    """`--rft-grader FILE`: the validator's RFT mode and the fields the grader reads."""
    from pydantic import ValidationError

    from shared.rft import ReinforcementSpec, item_fields

    try:
        grader = ReinforcementSpec.model_validate({"grader": Path(path).read_text(encoding="utf-8")}).grader
    except OSError as exc:
        raise _Usage(f"cannot read the grader {path}: {exc.strerror}") from None
    except ValidationError as exc:
        raise _Usage(f"the grader {path} is not valid: {exc.errors()[0]['msg']}") from None
    return {"method": "reinforcement", "grader_fields": tuple(item_fields(grader))}


def cmd_validate(args: argparse.Namespace) -> int:
    training = _readable(args.path)
    validation = _readable(args.validation) if args.validation else None
    process = _counting_process(training, args.model)  # forked before pydantic and the validator load
    try:
        return _validate(args, training, validation, process)
    finally:
        if process is not None:
            process.close()  # validate closed it already, unless it never ran (closing twice is harmless)


def _counting_process(training: Path, model: str | None) -> CountingProcess | None:
    """A counting process for a training file of more than one batch, where forking one is safe and pays
    (shared/validation/counting_process.py). Forked now, after numpy and tiktoken load and before the rest:
    it loads the encoding while this process loads the validator."""
    from shared.validation import counting_process
    from shared.validation.model_limits import DEFAULT_MODEL, profile_for
    from shared.validation.tokens import Tokenizer, TokenPipeline, usable_cpus

    if not counting_process.wanted(None, training.stat().st_size, TokenPipeline.BATCH_CHARS, usable_cpus()):
        return None
    return counting_process.CountingProcess(Tokenizer(profile_for(model or DEFAULT_MODEL).tokenizer))


def _validate(
    args: argparse.Namespace, training: Path, validation: Path | None, process: CountingProcess | None
) -> int:
    from pydantic import ValidationError

    from shared.validation import DEFAULT_MODEL, ValidationOptions, validate

    overrides = {
        "max_bytes": args.max_bytes,
        "min_examples": args.min_examples,
        "max_listed_errors": args.max_listed,
        "max_listed_warnings": args.max_listed,
        "tokens_per_example_limit": args.tokens_limit,
        "price_per_million_tokens": args.price,
        "n_epochs": args.epochs,
    }
    if args.rft_grader:
        overrides.update(_rft_options(args.rft_grader))
    try:
        options = ValidationOptions(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise _Usage(f"invalid option: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    for path in (p for p in (training, validation) if p is not None):
        other = _other_format(path)
        if other is not None:
            print(
                f"{path}: this is {other}, not JSONL (one JSON object per line). Convert it first:\n"
                f"  python -m shared.cli convert {path} {path.with_suffix('.jsonl')}",
                file=sys.stderr,
            )
            return EXIT_INVALID
    model = args.model or DEFAULT_MODEL
    show = not args.json and sys.stderr.isatty()
    try:
        with Progress(training, enabled=show) as train_f:
            if validation is not None:
                with Progress(validation, enabled=show) as valid_f:
                    report = validate(train_f, validation=valid_f, model=model, options=options, process=process)
            else:
                report = validate(train_f, model=model, options=options, process=process)
    except Exception as exc:
        if _tokenizer_unavailable(exc):
            raise _Usage(_tokenizer_message(model)) from None
        raise
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(summary(report, str(training), str(validation) if validation else None))
    return EXIT_OK if report.valid else EXIT_INVALID


def _other_format(path: Path) -> str | None:
    """'CSV' / 'TSV' / 'an XLSX workbook' / 'a JSON array' when the file is plainly not JSONL, else None."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK\x03\x04"):
        return "an XLSX workbook" if path.suffix.lower() in (".xlsx", ".xlsm") else "a zip archive"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"["):
        return "a JSON array"
    if not text or text.startswith(b"{"):
        return None
    first = text.split(b"\n", 1)[0]
    if path.suffix.lower() == ".tsv" or b"\t" in first:
        return "TSV"
    if path.suffix.lower() == ".csv" or b"," in first or b";" in first:
        return "CSV"
    return None


def _tokenizer_unavailable(exc: BaseException) -> bool:
    """True when `exc` is tiktoken failing to fetch or read an encoding file (offline, no cache)."""
    import traceback

    if not isinstance(exc, OSError | ValueError):  # requests' ConnectionError is an OSError
        return False
    return any("tiktoken" in frame.filename for frame in traceback.extract_tb(exc.__traceback__))


def _tokenizer_message(model: str) -> str:
    from shared.validation.model_limits import profile_for

    encoding = profile_for(model).tokenizer
    where = os.environ.get("TIKTOKEN_CACHE_DIR")
    found = f"TIKTOKEN_CACHE_DIR={where} does not hold it" if where else "TIKTOKEN_CACHE_DIR is not set"
    return (
        f"exact token counts need tiktoken's {encoding} encoding, which tiktoken downloads on first use, and the "
        f"download failed ({found}). Run once with internet access, or set TIKTOKEN_CACHE_DIR to a folder that "
        "holds the encoding files (tiktoken's cache; see the README, 'tiktoken')"
    )


class Progress:
    """A binary file whose reads are reported on stderr as a percentage (only on a terminal)."""

    def __init__(self, path: Path, *, enabled: bool, stream: TextIO | None = None, every: float = 0.25) -> None:
        self.path = path
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.every = every
        self.total = path.stat().st_size
        self.done = 0
        self._last = 0.0
        self._file: BinaryIO | None = None

    def __enter__(self) -> Progress:
        self._file = open(self.path, "rb")  # closed in __exit__
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._file is not None
        self._file.close()
        if self.enabled and self._last:
            self._write("\r\x1b[K")

    def fileno(self) -> int:  # with `tell`: the validator sees a regular file and its size (known_size)
        assert self._file is not None
        return self._file.fileno()

    def tell(self) -> int:
        assert self._file is not None
        return self._file.tell()

    def read(self, n: int = -1) -> bytes:
        assert self._file is not None
        chunk = self._file.read(n)
        self.done += len(chunk)
        if self.enabled:
            import time

            now = time.monotonic()
            if now - self._last >= self.every:
                self._last = now
                share = self.done / self.total if self.total else 1.0
                self._write(f"\r{self.path.name}: {share:4.0%} ({self.done / 1e6:,.1f} of {self.total / 1e6:,.1f} MB)")
        return chunk

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def summary(report: object, training: str, validation: str | None = None) -> str:
    """The human-readable form of a report."""
    from shared.validation import Distribution, ValidationReport

    assert isinstance(report, ValidationReport)
    out: list[str] = []
    verdict = "VALID" if report.valid else "INVALID"
    out.append(f"{training}: {verdict} for {report.model}")
    enc = report.encoding or "unreadable"
    out.append(
        f"  {report.examples:,} examples, format {report.format or '-'}, {enc}, "
        f"{report.line_endings} line endings, {report.bytes:,} bytes"
    )
    if report.validation is not None and validation:
        v = report.validation
        out.append(f"  validation {validation}: {v.examples:,} examples, format {v.format or '-'}, {v.encoding or '-'}")
    t = report.tokens
    if t is not None:
        out.append(
            f"  tokens ({t.tokenizer}): {t.total:,} in all, limit {t.tokens_per_example_limit:,} per example, "
            f"{t.examples_over_limit:,} over it"
        )

        def row(name: str, d: Distribution | None) -> None:
            if d is not None:
                out.append(
                    f"    {name:<18} min {d.min:g}  p10 {d.p10:g}  median {d.median:g}  mean {d.mean:g}  "
                    f"p90 {d.p90:g}  max {d.max:g}"
                )

        row("messages/example", t.messages_per_example)
        row("tokens/example", t.tokens_per_example)
        row("assistant tokens", t.assistant_tokens_per_example)
    e = report.estimate
    if e is not None:
        cost = f", about {e.cost:,.2f} at {e.price_per_million_tokens:g} per million" if e.cost is not None else ""
        out.append(f"  estimate: {e.n_epochs} epochs ({e.epochs_source}), {e.billed_tokens:,} billed tokens{cost}")
    for title, issues, total in (
        ("errors", report.errors, report.error_count),
        ("warnings", report.warnings, report.warning_count),
    ):
        if total:
            out.append(f"{total:,} {title}:")
            out.extend(_grouped(issues, report.counts))
    return "\n".join(out)


def _grouped(issues: Sequence[object], counts: dict[str, int], first_lines: int = 5) -> list[str]:
    """One line per issue; a code seen more than once is one line with its count, first lines and message."""
    from shared.validation import Issue

    by_code: dict[tuple[str, str | None], list[Issue]] = {}
    for issue in issues:
        assert isinstance(issue, Issue)
        by_code.setdefault((issue.code, issue.file), []).append(issue)
    out = []
    for (code, file), group in by_code.items():
        prefix = "validation " if file == "validation" else ""
        first = group[0]
        total = max(counts.get(code, len(group)), len(group))
        if len(group) == 1:  # (an issue may already sum up many lines in its own message)
            where = f"line {first.line}" if first.line is not None else "file"
            out.append(f"  {prefix}{where}: [{code}] {first.message}")
            continue
        lines = [str(i.line) for i in group[:first_lines] if i.line is not None]
        more = ", ..." if total > len(lines) else ""
        out.append(f"  [{code}] {total:,} times, {prefix}lines {', '.join(lines)}{more}; first: {first.message}")
    return out


# ---- convert ----------------------------------------------------------------------------------------


def _add_convert(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("convert", help="CSV, TSV, XLSX, JSON or JSONL to fine-tuning JSONL")
    p.add_argument("input", help="input file (.csv, .tsv, .xlsx, .json, .jsonl)")
    p.add_argument("output", help="output JSONL (the training part with --split)")
    p.add_argument("--model", default=None, help="target base model: chat records unless babbage-002/davinci-002")
    p.add_argument("--split", type=_fraction, metavar="FRACTION", help="also write a validation set of this share")
    p.add_argument(
        "--validation-out", metavar="PATH", help="validation output with --split (default: OUT with .validation)"
    )
    p.add_argument("--system", metavar="TEXT", help="system message for every chat example that has none")
    p.add_argument("--encoding", default="utf-8", help="text encoding of CSV/TSV input (default utf-8, e.g. cp1252)")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    import codecs

    from shared.validation import DEFAULT_MODEL
    from shared.validation.convert import ConversionError, convert

    source = _readable(args.input)
    out_path = Path(args.output)
    valid_path = None
    if args.split is not None:
        valid_path = Path(args.validation_out) if args.validation_out else out_path.with_suffix(".validation.jsonl")
    elif args.validation_out:
        raise _Usage("--validation-out needs --split")
    if out_path.resolve() == source.resolve() or (valid_path and valid_path.resolve() == source.resolve()):
        raise _Usage("the output would overwrite the input")
    if valid_path is not None and valid_path.resolve() == out_path.resolve():
        raise _Usage("--validation-out must differ from the output")
    for target in (out_path, valid_path):
        if target is not None and (target.is_dir() or not target.resolve().parent.is_dir()):
            raise _Usage(f"{target}: not a file in an existing folder")
    try:
        codecs.lookup(args.encoding)
    except LookupError:
        raise _Usage(f"unknown encoding {args.encoding!r}") from None
    # Write beside the targets and rename only on success: a failed conversion never truncates an existing file.
    temps: list[Path] = []
    try:
        with _temp_beside(out_path, temps) as out:
            options = {"model": args.model or DEFAULT_MODEL, "system": args.system, "encoding": args.encoding}
            if valid_path is not None:
                with _temp_beside(valid_path, temps) as vout:
                    result = convert(source, out, fraction=args.split, valid_out=vout, **options)
            else:
                result = convert(source, out, **options)
        for temp, target in zip(temps, (out_path, valid_path), strict=False):
            if target is not None:
                os.replace(temp, target)
        temps.clear()
    except ConversionError as exc:
        print(f"{source}: cannot convert: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:
        raise _Usage(f"cannot write {exc.filename or out_path}: {exc.strerror}") from exc
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    skipped = f", {result.skipped} empty rows skipped" if result.skipped else ""
    print(f"{source} ({result.input_format}): {result.written:,} examples{skipped}")
    if valid_path is not None:
        print(f"  {out_path}: {result.train_examples:,} training examples")
        print(f"  {valid_path}: {result.valid_examples:,} validation examples")
    else:
        print(f"  written to {out_path}")
    print(f"next: python -m shared.cli validate {out_path}" + (f" --validation {valid_path}" if valid_path else ""))
    return EXIT_OK


@contextlib.contextmanager
def _temp_beside(target: Path, temps: list[Path]) -> Iterator[BinaryIO]:
    """A new temporary file in `target`'s folder (so the final rename stays on one file system)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.resolve().parent)
    temps.append(Path(name))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # what open() would have made, not mkstemp's 0600
    with os.fdopen(fd, "wb") as fh:
        yield fh


# ---- entry point ------------------------------------------------------------------------------------


_LOCAL_COMMANDS = frozenset({"validate", "convert"})


def _command(words: Sequence[str]) -> str | None:
    return next((w for w in words if not w.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; for `validate` and `convert` (read from `argv`) without the run commands, whose imports
    (storage SDK, run records) would be most of a local command's start-up time."""
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_validate(sub)
    _add_convert(sub)
    if _command(sys.argv[1:] if argv is None else argv) not in _LOCAL_COMMANDS:
        from shared.runs_cli import add_run_commands  # drop, runs, status (need storage; imported lazily)

        add_run_commands(sub)
    return parser


def _run_command_errors() -> tuple[type[Exception], ...]:
    """`runs_cli.CommandError` once the run commands are loaded (only they raise it); else nothing to catch,
    so that `validate` and `convert` never import them."""
    runs_cli = sys.modules.get("shared.runs_cli")
    return (runs_cli.CommandError,) if runs_cli is not None else ()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)  # exits 2 on unusable arguments
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except _Usage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _run_command_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


def _exit_now(code: int) -> None:
    """Flush and end the process without tearing down the interpreter: freeing tiktoken's tables alone
    takes about 0.1 s, as much as a small file's validation. Only for `python -m shared.cli validate` and
    `convert` (nothing of theirs waits for exit handlers; the run commands exit normally)."""
    with contextlib.suppress(BrokenPipeError):  # `... | head` that left before the last bytes
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_code = main()
    if _command(sys.argv[1:]) in _LOCAL_COMMANDS:
        _exit_now(exit_code)
    sys.exit(exit_code)
