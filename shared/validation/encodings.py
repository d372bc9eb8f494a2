"""tiktoken's BPE cores for counting, loaded as cheaply as exactness allows.

Building o200k_base is most of a small validation's time: reading the `.tiktoken` file into a dict of
200,000 byte strings, then tiktoken's `CoreBPE` copying that dict into Rust (with its decoder and a sorted
token list). Two things make it cheaper, both exact:

- **The ranks, cached** (`read_ranks`): the dict is kept as a `marshal` file named by the SHA-256 of the
  `.tiktoken` file it came from (tiktoken's own expected hash, or the file's), with the SHA-256 of its own
  bytes in front; a file that does not match its checksum, or cannot be read, is ignored and rewritten.
  The same dict either way (tested).
- **A small core for small inputs** (`Encoding.core_for`): a text's tokens depend only on the ranks of byte
  strings *inside* the pieces its regex cuts it into (tiktoken looks up the whole piece, then pairs and
  merges of its bytes: lib.rs `byte_pair_encode`). A piece never holds a space that follows a character
  other than whitespace (in both patterns below a space is a piece's first character or follows
  whitespace), so cutting every text before such a space gives chunks that each hold whole pieces, and a
  core built from the ranks of every substring of those chunks (up to the longest token) encodes these
  texts exactly as the full one. It is used while the candidate substrings are few (a 10-line file, or the
  chunks a file's first batches miss in the chunk table), at most `MAX_SMALL_CORES` times per encoding and
  process; otherwise, and as soon as it exists, the full core.
"""

from __future__ import annotations

import binascii
import hashlib
import marshal
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FunctionType
from typing import Any

import tiktoken
from tiktoken.load import read_file_cached

from .chunk_counts import ChunkCounts

SEPARATOR = "<|endoftext|>"

# The split patterns whose pieces were checked to keep a space only first or after whitespace (see above).
O200K_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CL100K_PATTERN = (
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]"
    r"|\s+(?!\S)|\s"
)
CHUNKABLE_PATTERNS = frozenset({O200K_PATTERN, CL100K_PATTERN})
# Before a space that follows a non-whitespace character. Python's \s (str.isspace) holds every character
# the regex crate's \s does and a few more (\x1c-\x1f), so \S here is never whitespace to tiktoken.
_CHUNK_CUT = re.compile(r"(?<=\S)(?= )")
SMALL_CORE_LOOKUPS = 400_000  # candidate substrings up to which a small core is built instead of the full one
MAX_SMALL_CORES = 8  # per encoding and process; past that the full core
# A call of at most this many texts, each of at most this many characters from `_SIMPLE`, is counted by
# `bpe_count` in Python from the ranks (no core): the chunks a batch misses in the chunk table once it is warm.
PYTHON_BPE_TEXTS = 512
PYTHON_BPE_CHARS = 32
# Printable ASCII, the letters of Latin-1 and Latin Extended-A, and the basic Cyrillic block: characters whose
# classes (letter case, number, punctuation, space) Python's `regex` and tiktoken's fancy-regex agree on, as
# tests/validation/test_encodings.py checks for every one of them against tiktoken.
_SIMPLE = re.compile("[ -~\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017f\u0400-\u045f]+")


def _default_cache_dir() -> Path | None:
    """`BPE_RANKS_CACHE_DIR` (empty: no cache), else a folder of this user's in the temporary directory."""
    value = os.environ.get("BPE_RANKS_CACHE_DIR")
    if value is not None:
        return Path(value) if value else None
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"autopilot-bpe-ranks-{uid}"


# Where the ranks are cached; None: not cached. Tests point it at a temporary folder.
RANKS_CACHE_DIR: Path | None = _default_cache_dir()
_RANKS_FORMAT = f"py{sys.version_info[0]}{sys.version_info[1]}-m{marshal.version}"


@dataclass(frozen=True)
class Core:
    """What counting needs of an encoding: a Rust BPE core and the separator's token id."""

    bpe: Any
    separator_id: int


def _parse_ranks(contents: bytes, path: str) -> dict[bytes, int]:
    """`base64-token rank` per line, in bulk C-level steps (tiktoken's `load_tiktoken_bpe`, about twice as fast)."""
    fields = contents.split()
    lines = contents.count(b"\n") + (not contents.endswith(b"\n"))
    if len(fields) != 2 * lines:
        raise ValueError(f"{path}: not one 'token rank' pair per line")
    return dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True))


def _cache_dir() -> Path | None:
    folder = RANKS_CACHE_DIR
    if folder is None:
        return None
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if hasattr(os, "getuid") and folder.stat().st_uid != os.getuid():  # someone else's: never read it
            return None
    except OSError:
        return None
    return folder


def _cached_ranks(file: Path) -> dict[bytes, int] | None:
    try:
        blob = file.read_bytes()
    except OSError:
        return None
    payload = memoryview(blob)[32:]
    if len(blob) <= 32 or hashlib.sha256(payload).digest() != blob[:32]:
        return None
    ranks = marshal.loads(payload)
    return ranks if type(ranks) is dict else None


def _store_ranks(file: Path, ranks: dict[bytes, int]) -> None:
    payload = marshal.dumps(ranks)
    partial = file.with_name(f"{file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        partial.write_bytes(hashlib.sha256(payload).digest() + payload)
        os.replace(partial, file)
    except OSError:
        partial.unlink(missing_ok=True)


def read_ranks(path: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """tiktoken's `load_tiktoken_bpe(path, expected_hash)`: the same dict, from the cache when it is there.

    With `expected_hash` (what tiktoken's constructors pass) a cached dict is found without reading the
    `.tiktoken` file; without it the file is read and hashed first.
    """
    folder = _cache_dir()
    contents = None
    digest = expected_hash
    if folder is not None and digest is None:
        contents = read_file_cached(path)
        digest = hashlib.sha256(contents).hexdigest()
    cached = folder / f"{digest}.{_RANKS_FORMAT}.ranks" if folder is not None else None
    if cached is not None:
        ranks = _cached_ranks(cached)
        if ranks is not None:
            return ranks
    if contents is None:
        contents = read_file_cached(path, expected_hash)  # tiktoken's download cache, hash checked
    ranks = _parse_ranks(contents, path)
    if cached is not None:
        _store_ranks(cached, ranks)
    return ranks


@dataclass(frozen=True)
class _Spec:
    ranks: dict[bytes, int]
    special_tokens: dict[str, int]
    pattern: str
    longest: int  # bytes of the longest token


def _load_spec(name: str) -> _Spec:
    """The encoding's ranks, special tokens and pattern, from its registered constructor with `read_ranks`."""
    from tiktoken_ext.openai_public import ENCODING_CONSTRUCTORS  # type: ignore[import-untyped]

    constructor = ENCODING_CONSTRUCTORS[name]
    if "load_tiktoken_bpe" not in constructor.__code__.co_names:
        raise LookupError(f"{name}: the constructor does not load a .tiktoken file")
    spec = FunctionType(constructor.__code__, {**constructor.__globals__, "load_tiktoken_bpe": read_ranks})()
    ranks = spec["mergeable_ranks"]
    return _Spec(ranks, dict(spec["special_tokens"]), spec["pat_str"], max(map(len, ranks)))


def _core(spec: _Spec, ranks: dict[bytes, int]) -> Core:
    from tiktoken import _tiktoken  # type: ignore[attr-defined]

    bpe = _tiktoken.CoreBPE(ranks, spec.special_tokens, spec.pattern)
    return Core(bpe, int(spec.special_tokens[SEPARATOR]))


def bpe_count(ranks: dict[bytes, int], piece: bytes) -> int:
    """Tokens of one regex piece, as tiktoken counts them (lib.rs: the piece's own rank if it has one, else
    `byte_pair_merge`: merge the adjacent pair whose joined bytes have the lowest rank, the leftmost of equal
    ones, until no pair has a rank)."""
    if piece in ranks:
        return 1
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, at = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best is None or rank < best):
                best, at = rank, i
        if best is None:
            break
        parts[at : at + 2] = [parts[at] + parts[at + 1]]
    return len(parts)


def chunks(text: str) -> list[str]:
    """`text` cut before every space that follows a non-whitespace character: each piece is inside one chunk."""
    return _CHUNK_CUT.split(text)


def _tiktoken_text(text: str) -> str:
    """The text tiktoken encodes: a lone surrogate is replaced as `Encoding.encode_ordinary` does."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class Encoding:
    """One encoding's cores: the full one, built once and kept, and small ones for small inputs. Thread-safe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._full: Core | None = None
        self._spec: _Spec | None = None
        self._chunkable: bool | None = None
        self.small_cores = 0  # built so far (for tests and the benchmark)
        self._split: Callable[[str], list[str]] | None = None  # the pattern in Python's regex (count_in_python)
        self.chunk_counts = ChunkCounts()  # counts of short chunks, for every validation in this process

    def chunkable(self) -> bool:
        """Whether a text's count is the sum of its chunks' counts: the pattern is one checked for that."""
        found = self._chunkable
        if found is None:
            with self._lock:
                self._spec_or_none()
                found = self._chunkable = bool(self._chunkable)
        return found

    def full(self) -> Core:
        with self._lock:
            return self._full_locked()

    def _full_locked(self) -> Core:
        if self._full is None:
            self._full = self._build_full()
            self._spec = None  # the Rust core has its own copy; 25 MB of Python objects go
        return self._full

    def core_for(self, texts: Sequence[str]) -> Core:
        """A core that counts `texts` exactly as the full one: a small one while that is cheap (and until
        `MAX_SMALL_CORES` were built: then the full one, built once, costs less than more small ones)."""
        if self._full is not None:
            return self._full
        with self._lock:
            if self.small_cores >= MAX_SMALL_CORES:
                return self._full_locked()
            spec = self._spec_or_none()
            if spec is not None:
                subset = self._subset(spec, texts)
                if subset is not None:
                    self.small_cores += 1
                    return _core(spec, subset)
        return self.full()

    def count_in_python(self, texts: Sequence[str]) -> list[int] | None:
        """Token counts of a few short simple texts (`_SIMPLE`) from the ranks, without a core; None when the
        full core exists, or the texts are more, longer or other than that (then a core counts them).

        Exact: the pattern cuts such a text into the same pieces in Python's `regex` as in tiktoken's
        fancy-regex (the classes the patterns use agree on these characters), and each piece is counted as
        tiktoken counts it (`bpe_count`). tests/validation/test_encodings.py checks both against tiktoken, for
        every one of these characters and by hypothesis."""
        if self._full is not None or len(texts) > PYTHON_BPE_TEXTS:
            return None
        fullmatch = _SIMPLE.fullmatch
        if not all(len(t) <= PYTHON_BPE_CHARS and fullmatch(t) for t in texts):
            return None
        with self._lock:
            spec = self._spec_or_none()
            if spec is None:
                return None
            split = self._split
            if split is None:
                import regex  # tiktoken's own dependency

                split = self._split = regex.compile(spec.pattern).findall
        ranks = spec.ranks
        return [sum(bpe_count(ranks, piece.encode("utf-8")) for piece in split(t)) for t in texts]

    @staticmethod
    def too_large(texts: Sequence[str]) -> bool:
        """Whether `texts` are too large for a small core whatever their chunks (one lookup per byte at least)."""
        return sum(map(len, texts)) > SMALL_CORE_LOOKUPS

    def _spec_or_none(self) -> _Spec | None:
        if self._spec is None and self._full is None:
            try:
                spec = _load_spec(self.name)
            except Exception:  # noqa: BLE001 - any mismatch with tiktoken's internals: the public API
                return None
            if spec.pattern not in CHUNKABLE_PATTERNS or SEPARATOR not in spec.special_tokens:
                self._chunkable = False
                return None
            self._spec = spec
            self._chunkable = True
        return self._spec

    @staticmethod
    def _subset(spec: _Spec, texts: Sequence[str]) -> dict[bytes, int] | None:
        """The ranks of every substring of every chunk of `texts`, or None past `SMALL_CORE_LOOKUPS`."""
        ranks, longest = spec.ranks, spec.longest
        if Encoding.too_large(texts):  # no need to cut them
            return None
        pieces = [c.encode("utf-8") for t in texts for c in chunks(_tiktoken_text(t))]
        lookups = sum(min(n, longest) * n for n in map(len, pieces))  # an upper bound
        if lookups > SMALL_CORE_LOOKUPS:
            return None
        subset: dict[bytes, int] = {}
        for b in set(pieces):
            n = len(b)
            for i in range(n):
                for j in range(i + 1, min(n, i + longest) + 1):
                    rank = ranks.get(b[i:j])
                    if rank is not None:
                        subset[b[i:j]] = rank
        return subset

    def _build_full(self) -> Core:
        spec = self._spec_or_none()
        if spec is not None:
            core = _core(spec, spec.ranks)
        else:
            enc = tiktoken.get_encoding(self.name)
            core = Core(enc._core_bpe, enc.encode_single_token(SEPARATOR))
        core.bpe.encode_to_tiktoken_buffer("", {SEPARATOR})
        return core


_ENCODINGS: dict[str, Encoding] = {}
_ENCODINGS_LOCK = threading.Lock()


def encoding(name: str) -> Encoding:
    """The process's one `Encoding` for `name` (its full core, once built, serves every later validation)."""
    with _ENCODINGS_LOCK:
        found = _ENCODINGS.get(name)
        if found is None:
            found = _ENCODINGS[name] = Encoding(name)
        return found
