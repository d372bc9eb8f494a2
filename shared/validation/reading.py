"""Streaming a JSONL source line by line without holding it: a binary file-like or an iterable of chunks.

`training` may be an open file, a blob download stream (`.read(n)`), `download_blob().chunks()`, or bytes.
Lines are numbered from 1 as a text editor would (blank lines count). Only the line being assembled is
held; a line longer than `max_line_bytes` is skipped unread and reported as `None`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

BOM = b"\xef\xbb\xbf"


@runtime_checkable
class BinaryReadable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


Source = BinaryReadable | Iterable[bytes] | bytes | bytearray | memoryview


class SourceError(Exception):
    """The source is not a binary stream or chunk iterable, or raised while being read."""


def iter_chunks(source: Source, chunk_size: int) -> Iterator[bytes]:
    """Chunks of `source`, never empty, each as `bytes`."""
    if isinstance(source, bytes | bytearray | memoryview):
        if source:
            yield bytes(source)
        return
    if isinstance(source, str):
        raise SourceError("expected bytes or a binary stream, got str: open the file in binary mode ('rb')")
    read = getattr(source, "read", None)
    if callable(read):
        while True:
            chunk = read(chunk_size)
            if not chunk:
                return
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise SourceError(f"read() returned {type(chunk).__name__}, not bytes: open the file in binary mode")
            yield bytes(chunk)
    else:
        for chunk in cast(Iterable[bytes], source):
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise SourceError(f"the chunk iterable yielded {type(chunk).__name__}, not bytes")
            if chunk:
                yield bytes(chunk)


def known_size(source: Source) -> int | None:
    """The bytes left to read in `source` when that can be known without reading: `bytes`, or a regular file
    opened in binary mode (from its position); None for other streams and chunk iterables."""
    if isinstance(source, bytes | bytearray | memoryview):
        return len(source)
    fileno, tell = getattr(source, "fileno", None), getattr(source, "tell", None)
    if not callable(fileno) or not callable(tell):
        return None
    try:
        status = os.fstat(fileno())
        return max(status.st_size - tell(), 0) if stat.S_ISREG(status.st_mode) else None
    except (OSError, ValueError):  # not a real file (io.BytesIO has no fileno), or closed
        return None


@dataclass
class StreamFacts:
    """What was learnt about the byte stream while splitting it into lines."""

    bytes_read: int = 0
    bom: bool = False
    utf16_or_32: str | None = None
    too_large: bool = False
    crlf_lines: int = 0
    lf_lines: int = 0
    lines: int = 0

    @property
    def line_endings(self) -> str:
        if self.crlf_lines and self.lf_lines:
            return "mixed"
        if self.crlf_lines:
            return "crlf"
        if self.lf_lines:
            return "lf"
        return "none"


def _sniff_wide(head: bytes) -> str | None:
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    sample = head[:4096]
    if sample.count(0) * 4 >= len(sample) >= 2:  # NUL every other byte: UTF-16/32 without a BOM
        return "UTF-16 or UTF-32 (no BOM)"
    return None


def _with_head(chunks: Iterable[bytes], head_size: int) -> Iterator[bytes]:
    """The same bytes, the first chunk holding at least `head_size` bytes (or the whole stream)."""
    it = iter(chunks)
    head: list[bytes] = []
    size = 0
    for chunk in it:
        head.append(chunk)
        size += len(chunk)
        if size >= head_size:
            break
    if head:
        yield b"".join(head)
    yield from it


def iter_lines(
    chunks: Iterable[bytes], facts: StreamFacts, *, max_bytes: int, max_line_bytes: int
) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its end-of-line) pairs; `None` for a line over `max_line_bytes`.

    Stops (setting `facts.too_large`) once more than `max_bytes` have been read, and yields nothing when
    the stream is UTF-16/32 (`facts.utf16_or_32`). A leading UTF-8 BOM is removed and noted.
    """
    pending: list[bytes] = []
    pending_len = 0
    skipping = False
    lineno = 0
    first = True
    for chunk in _with_head(chunks, 4096):
        facts.bytes_read += len(chunk)
        if facts.bytes_read > max_bytes:
            facts.too_large = True
            return
        if first:
            first = False
            wide = _sniff_wide(chunk)
            if wide:
                facts.utf16_or_32 = wide
                return
            if chunk.startswith(BOM):
                facts.bom = True
                chunk = chunk[3:]
        start = 0
        size = len(chunk)
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if start < size and not skipping:
                    pending.append(chunk[start:])
                    pending_len += size - start
                    if pending_len > max_line_bytes:
                        skipping = True
                        pending, pending_len = [], 0
                break
            lineno += 1
            if skipping:
                skipping = False
                yield lineno, None
            else:
                if pending:
                    pending.append(chunk[start:nl])
                    line = b"".join(pending)
                    pending, pending_len = [], 0
                else:
                    line = chunk[start:nl]
                if line.endswith(b"\r"):
                    facts.crlf_lines += 1
                    line = line[:-1]
                else:
                    facts.lf_lines += 1
                yield lineno, (None if len(line) > max_line_bytes else line)
            start = nl + 1
    if skipping:
        lineno += 1
        yield lineno, None
    elif pending:
        line = b"".join(pending)
        lineno += 1
        yield lineno, line[:-1] if line.endswith(b"\r") else line
    facts.lines = lineno
