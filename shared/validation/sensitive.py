"""Likely secrets and personal data in example text, found on the raw line bytes.

Lines are scanned in blocks of about 512 KB joined by newlines, with C-speed primitives first: one
`bytes.translate` maps the block to its shape (a class per byte: every secret has a run of 16+ token
characters, every phone number digits around a separator), numpy over 8-byte words finds the long runs, a
regex with a literal first byte finds digit-separator-digit, `bytes.find` finds `@` and key headers, and
the real regexes run only in a small window there. Match offsets are mapped back to line numbers.

Matches are never echoed whole: a secret shows its first 4 characters and its length, an email its first
character and domain, a phone number its last 2 digits.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import orjson

# (kind, pattern); group 1, when present, is the secret itself.
_SECRETS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("OpenAI-style API key", re.compile(rb"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    ("bearer token", re.compile(rb"(?i)\bbearer[ \t]+[A-Za-z0-9\-._~+/]{20,}=*")),
    ("AWS access key id", re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(rb"\b(?:gh[pousr]|github_pat)_[A-Za-z0-9_]{30,}")),
    ("Slack token", re.compile(rb"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("storage account key", re.compile(rb"(?i)AccountKey=[A-Za-z0-9+/=]{40,}")),
    ("JSON web token", re.compile(rb"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    (
        "API key assignment",
        re.compile(
            rb"(?i)(?:api[_-]?key|subscription[_-]?key|client[_-]?secret|access[_-]?token|secret[_-]?key)"
            rb"(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:\\?[\"'])?([A-Za-z0-9_\-+/=.]{16,})"
        ),
    ),
)
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/=."
RUN_LENGTH = 16  # every secret pattern needs a run of this many token characters
# A block's shape: one byte per byte, its class for both searches. Token characters have the high bit set;
# digits and the phone separators " ().-" (token characters or not) have classes of their own.
_DIGIT, _DASH, _TOKEN, _GAP, _OTHER = 0xB0, 0xAD, 0xE1, 0x20, 0x78


def _class(c: int) -> int:
    if 48 <= c <= 57:
        return _DIGIT
    if c in b"-.":
        return _DASH
    if c in b" ()":
        return _GAP
    return _TOKEN if c in _TOKEN_CHARS else _OTHER


_SHAPE = bytes(_class(c) for c in range(256))
_HIGH_BITS = np.uint64(0x8080808080808080)
_DIGIT_SEPARATOR_DIGIT = re.compile(rb"\xb0[\xad ]\xb0")  # in a shape; the literal first byte makes it fast
_BACK = 80
_FORWARD = 512
_EMAIL = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Starts with a digit class so the regex engine skips ahead fast; candidates are filtered in Python.
_PHONE_CANDIDATE = re.compile(rb"\d[\d ().-]{7,18}\d")
_SEPARATORS = frozenset(b" ().-")
_GROUPS = re.compile(rb"[ ().-]+")
BLOCK_BYTES = 512 * 1024


@dataclass(frozen=True)
class Finding:
    line: int
    kind: str
    secret: bool
    masked: str


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def mask_secret(value: bytes) -> str:
    return f"{_text(value[:4])}… ({len(value)} characters)"


def mask_email(value: bytes) -> str:
    local, _, domain = value.partition(b"@")
    return f"{_text(local[:1])}***@{_text(domain)}"


def mask_phone(value: bytes) -> str:
    digits = re.sub(rb"\D", b"", value)
    return f"***{_text(digits[-2:])} ({len(digits)} digits)"


def _is_phone(block: bytes, m: re.Match[bytes]) -> bool:
    """9-15 digits in 3+ groups split by space, dot, dash or parentheses, not inside a word or number."""
    start, end = m.span()
    before = block[start - 1 : start]
    after = block[end : end + 1]
    if before.isalnum() or before in (b".", b"_", b",") or after.isalnum() or after in (b"_", b","):
        return False
    value = m.group()
    digits = sum(1 for c in value if 48 <= c <= 57)
    return 9 <= digits <= 15 and any(c in _SEPARATORS for c in value) and len(_GROUPS.split(value.strip(b"()"))) >= 3


class SensitiveScanner:
    """Feed lines with `add`; findings come back from `add` when a block fills, and from `flush`."""

    def __init__(self, *, secrets: bool = True, pii: bool = True) -> None:
        self.secrets = secrets
        self.pii = pii
        self._lines: list[int] = []
        self._datas: list[bytes] = []
        self._size = 0

    def add(self, line: int, data: bytes) -> list[Finding]:
        self._lines.append(line)
        self._datas.append(data)
        self._size += len(data) + 1
        if self._size >= BLOCK_BYTES:
            return self.flush()
        return []

    def flush(self) -> list[Finding]:
        if not self._datas:
            return []
        datas, lines = self._datas, self._lines
        block = b"\n".join(datas)
        self._lines, self._datas, self._size = [], [], 0
        found: dict[tuple[int, str], Finding] = {}
        counts: dict[tuple[int, str], int] = {}
        starts: list[int] = []  # of each line in the block, worked out at the first finding

        def record(offset: int, kind: str, secret: bool, mask: Callable[[bytes], str], value: bytes) -> None:
            if not starts:
                starts.extend(accumulate((len(d) + 1 for d in datas[:-1]), initial=0))
            key = (lines[bisect_right(starts, offset) - 1], kind)
            if key in found:
                counts[key] += 1
            else:
                found[key] = Finding(key[0], kind, secret, mask(value))
                counts[key] = 1

        shape = block.translate(_SHAPE)
        if self.secrets:
            for at, run_end in long_runs(shape):
                lo, hi = max(0, at - _BACK), min(run_end, at + _FORWARD) + 1
                for kind, pattern in _SECRETS:
                    m = pattern.search(block, lo, hi)
                    if m:
                        value = m.group(m.lastindex or 0)
                        record(m.start(), kind, True, mask_secret, value)
            for at in _occurrences(block, b"PRIVATE KEY-----"):  # a key header has no long run of its own
                m = _PRIVATE_KEY.search(block, max(0, at - _BACK), at + 16)
                if m:
                    record(m.start(), "private key", True, mask_secret, m.group())
        if self.pii:
            for at in _occurrences(block, b"@"):
                m = _EMAIL.search(block, max(0, at - 64), at + 256)
                if m and m.start() <= at < m.end():
                    record(m.start(), "email address", False, mask_email, m.group())
            hit = _DIGIT_SEPARATOR_DIGIT.search(shape)
            while hit:
                at = hit.start()
                for m in _PHONE_CANDIDATE.finditer(block, max(0, at - 24), at + 24):
                    if m.start() <= at + 1 < m.end() and _is_phone(block, m):
                        record(m.start(), "phone number", False, mask_phone, m.group())
                        break
                hit = _DIGIT_SEPARATOR_DIGIT.search(shape, at + 24)
        result = []
        for key, f in found.items():
            n = counts[key]
            result.append(f if n == 1 else Finding(f.line, f.kind, f.secret, f"{f.masked} and {n - 1} more"))
        return result


class CleanPrefixes:
    """Line prefixes known to hold no finding, so that only the rest of a line that starts with one is scanned:
    the long system prompt most datasets repeat on every line, scanned once.

    Exact: a prefix is kept only if it is `{"messages": [` and one whole message object, then `,` (and
    spaces or tabs around), as orjson confirms, and a scan of the prefix alone finds nothing. No pattern here
    can match across its end: none matches a `}`, and none can start with the `,` or a blank after it. A
    match inside the prefix would hold a run of token characters (every secret pattern needs one) or an `@`
    or a digit-separator-digit there, which the scan of the prefix alone looks at with the same windows, and
    found nothing. So the findings of a line, and their counts, are those of its rest. Learnt from lines whose
    first message is a repeated long system prompt; at most `MAX` prefixes, and learning stops after
    `MAX_MISSES` attempts that failed (a file whose JSON escapes strings differently from orjson).
    """

    MAX = 16
    MAX_MISSES = 64
    KEY = 48  # bytes: prefixes are found by their first KEY bytes, then compared whole
    _AFTER = re.compile(rb"[ \t]*\}[ \t]*,[ \t]*")

    def __init__(self, *, secrets: bool, pii: bool) -> None:
        self.secrets = secrets
        self.pii = pii
        self._by_key: dict[bytes, list[bytes]] = {}
        self._count = 0
        self.misses = 0

    def length(self, data: bytes) -> int:
        """The length of the known clean prefix `data` starts with, or 0."""
        candidates = self._by_key.get(data[: self.KEY])
        if candidates:
            for prefix in candidates:
                if data.startswith(prefix):
                    return len(prefix)
        return 0

    @property
    def learning(self) -> bool:
        return self._count < self.MAX and self.misses < self.MAX_MISSES

    def learn(self, data: bytes, first_content: str) -> None:
        """Keep the prefix of `data` that ends after its first message, if that message's content is
        `first_content` and the prefix passes the checks above."""
        needle = orjson.dumps(first_content)
        at = data.find(needle)
        after = self._AFTER.match(data, at + len(needle)) if at > 0 else None
        prefix = data[: after.end()] if after is not None else b""
        try:  # the prefix up to its last brace, closed: {"messages": [ that one message ]}
            parsed = orjson.loads(prefix[: prefix.rfind(b"}") + 1] + b"]}") if prefix else None
        except orjson.JSONDecodeError:
            parsed = None
        messages = parsed.get("messages") if type(parsed) is dict and len(parsed) == 1 else None
        message = messages[0] if type(messages) is list and len(messages) == 1 else None
        if (
            type(message) is not dict
            or message.get("content") != first_content
            or len(prefix) <= self.KEY
            or scan(prefix, secrets=self.secrets, pii=self.pii)
        ):
            self.misses += 1
            return
        self._by_key.setdefault(prefix[: self.KEY], []).append(prefix)
        self._count += 1


def long_runs(shape: bytes) -> list[tuple[int, int]]:
    """(start, end) of every maximal run of `RUN_LENGTH`+ token characters (high bit set) in a block's shape.

    Prose is mostly token characters in short runs, where searching byte by byte stalls at every word. A run
    of 16 covers a whole aligned 8-byte word, so numpy finds the full words in one pass over the words; a run
    of full words is long when the token characters at the end of the word before it and at the start of the
    word after it add up to 8 more, and those also give its ends.
    """
    n = len(shape) // 8
    words = np.frombuffer(shape, dtype=np.uint64, count=n)
    full = np.flatnonzero((words & _HIGH_BITS) == _HIGH_BITS)
    if not full.size:
        return []
    rows = np.frombuffer(shape, dtype=np.uint8, count=8 * n).reshape(n, 8)
    before = rows[full - 1] >= 0x80  # full[0] - 1 may be -1: its count is zeroed below
    after = rows[np.minimum(full + 1, n - 1)] >= 0x80  # the last word's is replaced below
    tail = np.where(before.all(axis=1), 8, np.argmin(before[:, ::-1], axis=1))
    head = np.where(after.all(axis=1), 8, np.argmin(after, axis=1))
    if full[0] == 0:
        tail[0] = 0
    if full[-1] == n - 1:
        rest = shape[8 * n :]
        head[-1] = next((i for i, c in enumerate(rest) if c < 0x80), len(rest))
    keep = tail + head >= RUN_LENGTH - 8
    full, tail, head = full[keep], tail[keep], head[keep]
    if not full.size:
        return []
    # full words of one run are consecutive, runs are not: a run's first word has the tail before it, its
    # last the head after it
    split = np.diff(full) > 1
    first = np.concatenate(([True], split))
    last = np.concatenate((split, [True]))
    starts = 8 * full[first] - tail[first]
    ends = 8 * full[last] + 8 + head[last]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _occurrences(haystack: bytes, needle: bytes) -> list[int]:
    found = []
    at = haystack.find(needle)
    while at >= 0:
        found.append(at)
        at = haystack.find(needle, at + len(needle))
    return found


def scan(data: bytes, *, secrets: bool = True, pii: bool = True) -> list[Finding]:
    """Findings in one line (line number 1): for tests and one-off checks."""
    scanner = SensitiveScanner(secrets=secrets, pii=pii)
    scanner.add(1, data)
    return scanner.flush()
