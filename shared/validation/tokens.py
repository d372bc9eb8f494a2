"""Exact token counts with tiktoken, batched onto threads so tokenization hides parsing.

Counting convention (the OpenAI cookbook's `num_tokens_from_messages`, written down):
- chat: 3 tokens per example (reply priming) + for each message 3 + tokens(role) + tokens(content),
  + tokens(name) + 1 when a name is given; `tool_calls` / `function_call` count as the tokens of their
  compact JSON, the example's `tools` / `functions` likewise, once per example; an image part counts 85
  tokens (the low-detail base cost: a lower bound, as high/auto detail depends on the image size);
- completion: tokens(prompt) + tokens(completion);
- preference: the input messages as chat, plus each output message (3 + role + content).
Assistant tokens are the content tokens of assistant messages (all weights), and of both outputs.

Speed: one tiktoken call per batch. Strings are joined with `<|endoftext|>` and encoded with that special
token allowed; the encoder splits at special tokens before its regex, so each string is encoded exactly
as alone, and per-string counts are the gaps between separator ids. tiktoken releases the GIL for the
whole call, so batches on 2+ threads run beside the parsing thread. A batch holding the separator text
itself or a lone surrogate falls back to one `encode_ordinary` per string.
"""

from __future__ import annotations

import binascii
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from types import FunctionType
from typing import Any

import numpy as np
import numpy.typing as npt
import tiktoken
from tiktoken.load import read_file_cached

TOKENS_PER_EXAMPLE = 3
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_PER_IMAGE = 85

_SEPARATOR = "<|endoftext|>"
_I64 = npt.NDArray[np.int64]
_U32 = npt.NDArray[np.uint32]


@dataclass(frozen=True)
class _Core:
    """What counting needs of an encoding: the Rust BPE core and the separator's token id."""

    bpe: Any
    separator_id: int


def _read_ranks(path: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """`tiktoken.load.load_tiktoken_bpe` in bulk C-level steps (about twice as fast; the same dict).

    The file (read and hash-checked by tiktoken's own cache) is `base64-token rank` per line.
    """
    contents = read_file_cached(path, expected_hash)
    fields = contents.split()
    lines = contents.count(b"\n") + (not contents.endswith(b"\n"))
    if len(fields) != 2 * lines:
        raise ValueError(f"{path}: not one 'token rank' pair per line")
    return dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True))


@lru_cache(maxsize=4)
def _load_core(name: str) -> _Core:
    """The BPE core for `name`, without the Python copy of its ranks when possible.

    `tiktoken.Encoding` keeps the ranks dict (200,000 bytes objects, about 25 MB for o200k_base) after the
    Rust core has its own copy; the validator only encodes, so it builds the core from the registered
    constructor and lets the dict go. That is a quarter of the 150 MB budget for a 512 MB file. The
    constructor runs as a copy whose `load_tiktoken_bpe` is `_read_ranks` (loading is most of a cold
    start). Any surprise in tiktoken's internals falls back to the public `get_encoding`.
    """
    try:
        from tiktoken import _tiktoken  # type: ignore[attr-defined]
        from tiktoken_ext.openai_public import ENCODING_CONSTRUCTORS  # type: ignore[import-untyped]

        constructor = ENCODING_CONSTRUCTORS[name]
        if "load_tiktoken_bpe" in constructor.__code__.co_names:
            constructor = FunctionType(
                constructor.__code__, {**constructor.__globals__, "load_tiktoken_bpe": _read_ranks}
            )
        spec = constructor()
        bpe = _tiktoken.CoreBPE(spec["mergeable_ranks"], spec["special_tokens"], spec["pat_str"])
        core = _Core(bpe, int(spec["special_tokens"][_SEPARATOR]))
        del spec
        bpe.encode_to_tiktoken_buffer("", {_SEPARATOR})
        return core
    except Exception:  # noqa: BLE001 - any mismatch with tiktoken's internals: use the public API
        enc = tiktoken.get_encoding(name)
        return _Core(enc._core_bpe, enc.encode_single_token(_SEPARATOR))


class Tokenizer:
    """Counts tokens of many strings per call; thread-safe."""

    def __init__(self, encoding_name: str) -> None:
        self.name = encoding_name
        core = _load_core(encoding_name)
        self._bpe = core.bpe
        self._buffer_encode = getattr(core.bpe, "encode_to_tiktoken_buffer", None)
        self._sep_id = core.separator_id
        self._allowed = {_SEPARATOR}
        self._role_cache: dict[str, int] = {}

    def count(self, text: str) -> int:
        try:
            return len(self._bpe.encode_ordinary(text))
        except UnicodeEncodeError:  # a lone surrogate: repaired as tiktoken.Encoding.encode_ordinary does
            return len(self._bpe.encode_ordinary(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")))

    def role_tokens(self, role: str) -> int:
        n = self._role_cache.get(role)
        if n is None:
            n = self._role_cache[role] = self.count(role)
        return n

    def count_many(self, texts: Sequence[str]) -> _I64:
        """Token count of each string, as if each were encoded alone with `encode_ordinary`.

        One tiktoken call for all (the GIL is released during it); one `encode_ordinary` per text when a
        text holds a lone surrogate, or the separator itself (which shows as more separators than texts:
        the separator has no prefix that is also its suffix, so it cannot match across a text's edge).
        """
        if self._buffer_encode is not None and texts:
            try:
                raw = self._buffer_encode(_SEPARATOR.join(texts) + _SEPARATOR, self._allowed)
            except UnicodeEncodeError:  # a lone surrogate: counted one by one below
                pass
            else:
                ids = np.frombuffer(raw, dtype=np.uint32)
                ends = np.flatnonzero(ids == self._sep_id)
                if len(ends) == len(texts):
                    return np.diff(ends, prepend=-1).astype(np.int64) - 1
        return np.fromiter((self.count(t) for t in texts), dtype=np.int64, count=len(texts))


@dataclass
class TokenBatch:
    """Examples waiting to be counted. Example i owns texts[ends[i - 1]:ends[i]] (from 0 for the first),
    its assistant texts from mids[i] on; `fixed[i]` is its overhead (per-message constants, roles, images)."""

    lines: list[int] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    fixed: list[int] = field(default_factory=list)
    mids: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    chars: int = 0

    def add(
        self, line: int, messages: int, fixed: int, texts: list[str], assistant_texts: list[str], size: int
    ) -> None:
        self.lines.append(line)
        self.messages.append(messages)
        self.fixed.append(fixed)
        all_texts = self.texts
        all_texts += texts
        self.mids.append(len(all_texts))
        all_texts += assistant_texts
        self.ends.append(len(all_texts))
        self.chars += size


@dataclass
class CountedBatch:
    """Per-example figures, as uint32 (16 bytes an example: 2 million examples hold in 32 MB)."""

    lines: _U32
    messages: _U32
    tokens: _U32
    assistant_tokens: _U32


def count_batch(tokenizer: Tokenizer, batch: TokenBatch) -> CountedBatch:
    """Per-example figures of a batch: a worker thread's whole job."""
    counts = tokenizer.count_many(batch.texts)
    cumulative = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(counts)))
    mids = np.asarray(batch.mids, dtype=np.int64)
    ends = np.asarray(batch.ends, dtype=np.int64)
    starts = np.concatenate((np.zeros(1, dtype=np.int64), ends[:-1]))
    tokens = np.asarray(batch.fixed, dtype=np.int64) + cumulative[ends] - cumulative[starts]
    return CountedBatch(
        lines=np.asarray(batch.lines, dtype=np.uint32),
        messages=np.asarray(batch.messages, dtype=np.uint32),
        tokens=np.minimum(tokens, 2**32 - 1).astype(np.uint32),
        assistant_tokens=np.minimum(cumulative[ends] - cumulative[mids], 2**32 - 1).astype(np.uint32),
    )


class TokenPipeline:
    """Batches examples; worker threads count each batch (joining, one tiktoken call with the GIL released,
    per-example sums) while the calling thread goes on parsing.

    A bounded number of batches is in flight; results are folded in submission order (line order kept).
    """

    BATCH_CHARS = 512 * 1024

    def __init__(self, tokenizer: Tokenizer, threads: int | None = None) -> None:
        self.tokenizer = tokenizer
        workers = threads or min(os.cpu_count() or 2, 4)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokens")
        self._max_in_flight = workers + 1
        self._in_flight: deque[Future[CountedBatch]] = deque()
        self._batch = TokenBatch()
        self._store = _Columns()

    def add(
        self, line: int, messages: int, fixed: int, texts: list[str], assistant_texts: list[str], size: int
    ) -> None:
        """Queue one example; `size` (its line's length) paces the batches."""
        self._batch.add(line, messages, fixed, texts, assistant_texts, size)
        if self._batch.chars >= self.BATCH_CHARS:
            self._submit()

    def _submit(self) -> None:
        batch = self._batch
        if not batch.lines:
            return
        self._batch = TokenBatch()
        self._in_flight.append(self._pool.submit(count_batch, self.tokenizer, batch))
        while len(self._in_flight) > self._max_in_flight:
            self._fold()

    def _fold(self) -> None:
        self._store.append(self._in_flight.popleft().result())

    def finish(self) -> CountedBatch:
        """Wait for every batch; all examples' counts, in line order."""
        self._submit()
        while self._in_flight:
            self._fold()
        self.close()
        return self._store.view()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Columns:
    """Per-example figures in a few large arrays that double when full.

    Large blocks come from the system allocator and go back to it whole; keeping per-batch array objects
    instead would pin Python's small-object arenas, full of freed JSON, for the whole run.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._data = np.zeros((4, capacity), dtype=np.uint32)
        self.size = 0

    def append(self, part: CountedBatch) -> None:
        n = len(part.lines)
        if self.size + n > self._data.shape[1]:
            grown = np.zeros((4, max(2 * self._data.shape[1], self.size + n)), dtype=np.uint32)
            grown[:, : self.size] = self._data[:, : self.size]
            self._data = grown
        end = self.size + n
        for row, values in enumerate((part.lines, part.messages, part.tokens, part.assistant_tokens)):
            self._data[row, self.size : end] = values
        self.size = end

    def view(self) -> CountedBatch:
        d = self._data[:, : self.size]
        return CountedBatch(lines=d[0], messages=d[1], tokens=d[2], assistant_tokens=d[3])
