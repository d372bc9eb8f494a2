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

import os
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .chunk_counts import Pending
from .counting_process import CountingProcess
from .encodings import SEPARATOR, Core, encoding
from .statistics import Histogram

TOKENS_PER_EXAMPLE = 3
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_PER_IMAGE = 85

_I64 = npt.NDArray[np.int64]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity: `taskset`, a container's cpuset), else the CPU count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Tokenizer:
    """Counts tokens of many strings per call; thread-safe.

    Nothing is built until something is counted: then the encoding's full core, or for a small input a
    small core that counts it exactly as the full one (encodings.py).
    """

    def __init__(self, encoding_name: str, *, reuse_chunks: bool = True) -> None:
        self.name = encoding_name
        self._encoding = encoding(encoding_name)
        self._allowed = {SEPARATOR}
        self._role_cache: dict[str, int] = {}
        self._reuse_chunks = reuse_chunks

    def count(self, text: str) -> int:
        return self._count_one(self._encoding.core_for([text]), text)

    @staticmethod
    def _count_one(core: Core, text: str) -> int:
        try:
            return len(core.bpe.encode_ordinary(text))
        except UnicodeEncodeError:  # a lone surrogate: repaired as tiktoken.Encoding.encode_ordinary does
            return len(core.bpe.encode_ordinary(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")))

    def prime_roles(self, roles: Iterable[str], process: CountingProcess | None = None) -> None:
        """Count the role names in one go (one small core for all of them in a small validation), by `process`
        when one is given (which must owe nothing yet: answers come back in order), so this process need not
        load the encoding at all."""
        todo = sorted(set(roles) - self._role_cache.keys())
        if not todo:
            return
        counts = None
        if process is not None:
            process.submit(todo)
            counts = process.result()
        if counts is None:
            counts = self.count_many(todo)
        self._role_cache.update(zip(todo, counts.tolist(), strict=True))

    def role_tokens(self, role: str) -> int:
        n = self._role_cache.get(role)
        if n is None:
            n = self._role_cache[role] = self.count(role)
        return n

    def count_many(self, texts: Sequence[str]) -> _I64:
        """Token count of each string, as if each were encoded alone with `encode_ordinary`.

        Short chunks counted before are looked up (`chunk_counts.py`, for the encodings it is exact for);
        what is left is counted by `count_joined`.
        """
        if not texts:
            return np.zeros(0, dtype=np.int64)
        pending = self.look_up(texts)
        return self.count_joined(texts) if pending is None else pending.complete(self.count_joined)

    def look_up(self, texts: Sequence[str]) -> Pending | None:
        """The texts' chunks looked up in the encoding's chunk table (`chunk_counts.py`); None where the table
        does not apply (another pattern, a lone surrogate, `reuse_chunks=False`): then `count_joined` counts."""
        encoding = self._encoding
        if not self._reuse_chunks or not encoding.chunkable():
            return None
        return encoding.chunk_counts.look_up(texts)

    def count_joined(self, texts: Sequence[str]) -> _I64:
        """Token count of each string by tiktoken: one call for all (the GIL is released during it); one
        `encode_ordinary` per text when a text holds a lone surrogate, or the separator itself (which shows as
        more separators than texts: the separator has no prefix that is also its suffix, so it cannot match
        across a text's edge)."""
        if not texts:
            return np.zeros(0, dtype=np.int64)
        few = self._encoding.count_in_python(texts)  # what a warm chunk table misses: no core needed
        if few is not None:
            return np.array(few, dtype=np.int64)
        core = self._encoding.core_for(texts)
        try:
            raw = core.bpe.encode_to_tiktoken_buffer(SEPARATOR.join(texts) + SEPARATOR, self._allowed)
        except UnicodeEncodeError:  # a lone surrogate: counted one by one below
            pass
        else:
            ids = np.frombuffer(raw, dtype=np.uint32)
            ends = np.flatnonzero(ids == core.separator_id)
            if len(ends) == len(texts):
                return np.diff(ends, prepend=-1).astype(np.int64) - 1
        return np.fromiter((self._count_one(core, t) for t in texts), dtype=np.int64, count=len(texts))


class TokenCache:
    """Token counts of long strings seen more than once: the same string, the same count.

    The count of a string depends on the string alone (see `Tokenizer.count_many`), so a count is reused
    only for an identical string: strings are found by length, then compared whole (`==`, a memcmp, which
    costs less than hashing a new string object on every line). A string is kept from its second sighting:
    at the first, its length and ends are noted (at most `MAX_SEEN` notes, forgotten all at once when full),
    so a file whose long strings are all different keeps none. At most `MAX_ENTRIES` strings and
    `MAX_CHARS` characters are kept, the oldest leaving first. Used from the parsing thread only.
    """

    MIN_CHARS = 256
    MAX_ENTRIES = 256
    MAX_CHARS = 1 << 20
    MAX_SEEN = 1 << 14
    _ENDS = 32

    def __init__(self) -> None:
        self._by_length: dict[int, list[tuple[str, int]]] = {}
        self._order: deque[str] = deque()
        self._seen: dict[int, tuple[str, str]] = {}
        self.chars = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._order)

    def get(self, text: str) -> int | None:
        same_length = self._by_length.get(len(text))
        if same_length is not None:
            for kept, n in same_length:
                if kept == text:
                    self.hits += 1
                    return n
        return None

    def wanted(self, text: str) -> bool:
        """Whether to keep `text`'s count once known: a string of its length and ends was seen before."""
        ends = (text[: self._ENDS], text[-self._ENDS :])
        n = len(text)
        if self._seen.get(n) == ends:
            return True
        if len(self._seen) >= self.MAX_SEEN:
            self._seen.clear()
        self._seen[n] = ends
        return False

    def put(self, text: str, count: int) -> None:
        if len(text) > self.MAX_CHARS or self.get(text) is not None:
            return
        while self._order and (len(self._order) >= self.MAX_ENTRIES or self.chars + len(text) > self.MAX_CHARS):
            self._evict()
        self._by_length.setdefault(len(text), []).append((text, count))
        self._order.append(text)
        self.chars += len(text)

    def _evict(self) -> None:
        oldest = self._order.popleft()
        same_length = self._by_length[len(oldest)]
        same_length[:] = [(t, n) for t, n in same_length if t is not oldest]
        if not same_length:
            del self._by_length[len(oldest)]
        self.chars -= len(oldest)


@dataclass
class TokenBatch:
    """Examples waiting to be counted. Example i owns texts[ends[i - 1]:ends[i]] (from 0 for the first),
    its assistant texts from mids[i] on; `fixed[i]` is its overhead (per-message constants, roles, images,
    cached counts). `to_cache` holds the positions in `texts` whose counts go into the cache."""

    lines: list[int] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    fixed: list[int] = field(default_factory=list)
    mids: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    to_cache: list[int] = field(default_factory=list)
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
    """Per-example figures of one batch (int64 arrays), and the counts of the texts to cache."""

    lines: _I64
    messages: _I64
    tokens: _I64
    assistant_tokens: _I64
    cached: list[tuple[str, int]]


def count_texts(tokenizer: Tokenizer, texts: Sequence[str]) -> _I64:
    """A worker thread's whole job: tiktoken over texts (the GIL released for all of it)."""
    return tokenizer.count_joined(texts)


def count_batch(batch: TokenBatch, counts: _I64) -> CountedBatch:
    """Per-example figures of a batch from its texts' counts (numpy: on the parsing thread)."""
    cumulative = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(counts)))
    mids = np.asarray(batch.mids, dtype=np.int64)
    ends = np.asarray(batch.ends, dtype=np.int64)
    starts = np.concatenate((np.zeros(1, dtype=np.int64), ends[:-1]))
    texts = batch.texts
    return CountedBatch(
        lines=np.asarray(batch.lines, dtype=np.int64),
        messages=np.asarray(batch.messages, dtype=np.int64),
        tokens=np.asarray(batch.fixed, dtype=np.int64) + cumulative[ends] - cumulative[starts],
        assistant_tokens=cumulative[ends] - cumulative[mids],
        cached=[(texts[i], int(counts[i])) for i in batch.to_cache],
    )


@dataclass
class _InFlight:
    """A batch on its way: its chunk-table look-up (None: not used) and the worker counting what is left, or
    neither: the counting process has it."""

    batch: TokenBatch
    pending: Pending | None = None
    counting: Future[_I64] | None = None

    def counts(self) -> _I64:
        if self.pending is None:
            assert self.counting is not None
            return self.counting.result()
        return self.pending.fill(self.counting.result()) if self.counting is not None else self.pending.counts


@dataclass
class TokenFigures:
    """What the report needs of every counted example, in memory that does not grow with their number:
    histograms for the distributions, sums, and the first `keep_over_limit` examples over the limit."""

    limit: int
    keep_over_limit: int
    examples: int = 0
    total: int = 0
    billed: int = 0
    over_limit: int = 0
    over_limit_first: list[tuple[int, int]] = field(default_factory=list)  # (line, tokens)
    messages: Histogram = field(default_factory=Histogram)
    tokens: Histogram = field(default_factory=Histogram)
    assistant_tokens: Histogram = field(default_factory=Histogram)

    def add(self, part: CountedBatch) -> None:
        tokens = part.tokens
        self.examples += int(tokens.size)
        self.total += int(tokens.sum())
        self.billed += int(np.minimum(tokens, self.limit).sum())
        over = np.flatnonzero(tokens > self.limit)
        if over.size:
            self.over_limit += int(over.size)
            room = self.keep_over_limit - len(self.over_limit_first)
            if room > 0:
                shown = over[:room]
                self.over_limit_first += zip(part.lines[shown].tolist(), tokens[shown].tolist(), strict=True)
        self.messages.add(part.messages)
        self.tokens.add(tokens)
        self.assistant_tokens.add(part.assistant_tokens)


class TokenPipeline:
    """Batches examples and counts them beside the calling thread, which goes on parsing.

    Given a counting process (counting_process.py: `validate` forks one where it pays and is safe), every
    batch goes to it, on another core. Otherwise each batch's texts are looked up in the chunk table on the
    calling thread, and worker threads count what is left (one tiktoken call with the GIL released).

    A bounded number of batches is in flight; results are folded in submission order (line order kept)
    into `TokenFigures`, on the calling thread. Long non-assistant texts seen before are counted once
    (`TokenCache`).
    """

    BATCH_CHARS = 512 * 1024
    PROCESS_IN_FLIGHT = 4  # batches sent to the counting process and not yet folded

    def __init__(
        self,
        tokenizer: Tokenizer,
        threads: int | None = None,
        *,
        limit: int,
        keep_over_limit: int,
        cache: TokenCache | None = None,
        process: CountingProcess | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        workers = threads or min(usable_cpus(), 4)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokens")
        self._max_in_flight = self.PROCESS_IN_FLIGHT if process is not None else workers + 1
        self._in_flight: deque[_InFlight] = deque()
        self._batch = TokenBatch()
        self._cache = cache
        self.process = process  # its owner closes it
        self.figures = TokenFigures(limit=limit, keep_over_limit=keep_over_limit)

    def add(
        self, line: int, messages: int, fixed: int, texts: list[str], assistant_texts: list[str], size: int
    ) -> None:
        """Queue one example; `size` (its line's length) paces the batches."""
        cache = self._cache
        if cache is not None:
            minimum = cache.MIN_CHARS
            for t in texts:
                if len(t) >= minimum:
                    fixed, texts = self._use_cache(cache, fixed, texts)
                    break
        self._batch.add(line, messages, fixed, texts, assistant_texts, size)
        process = self.process
        if process is not None and process.unsent:
            process.pump()
        if self._batch.chars >= self.BATCH_CHARS:
            self._submit()

    def _use_cache(self, cache: TokenCache, fixed: int, texts: list[str]) -> tuple[int, list[str]]:
        """Cached counts go into `fixed`; the other texts stay, those seen before marked for the cache."""
        minimum = cache.MIN_CHARS
        rest: list[str] = []
        base = len(self._batch.texts)
        for t in texts:
            if len(t) >= minimum:
                n = cache.get(t)
                if n is not None:
                    fixed += n
                    continue
                if cache.wanted(t):
                    self._batch.to_cache.append(base + len(rest))
            rest.append(t)
        return fixed, rest

    def _submit(self) -> None:
        batch = self._batch
        if not batch.lines:
            return
        self._batch = TokenBatch()
        if self.process is not None:
            self.process.submit(batch.texts)
            self._in_flight.append(_InFlight(batch))
        else:
            self._in_flight.append(self._count_here(batch))
        while len(self._in_flight) > self._max_in_flight:
            self._fold()

    def _count_here(self, batch: TokenBatch) -> _InFlight:
        pending = self.tokenizer.look_up(batch.texts)  # numpy on this thread: on a worker it waits for the GIL
        if pending is not None and pending.waiting and not self._in_flight:
            # nothing in flight (the first batch): fill the table now, so the next batches find its chunks
            # instead of each counting them again
            pending.complete(self.tokenizer.count_joined)
            return _InFlight(batch, pending)
        if pending is None:
            counting = self._pool.submit(count_texts, self.tokenizer, batch.texts)
        elif pending.waiting:
            counting = self._pool.submit(count_texts, self.tokenizer, pending.missing())
        else:
            counting = None
        return _InFlight(batch, pending, counting)

    def _fold(self) -> None:
        done = self._in_flight.popleft()
        if done.pending is None and done.counting is None:  # the counting process's
            assert self.process is not None
            counts = self.process.result()
            if counts is None:  # the process is gone: this batch is counted here
                done = self._count_here(done.batch)
                counts = done.counts()
        else:
            counts = done.counts()
        part = count_batch(done.batch, counts)
        self.figures.add(part)
        if self._cache is not None:
            for text, n in part.cached:
                self._cache.put(text, n)

    def finish(self) -> TokenFigures:
        """Wait for every batch; the figures of all examples."""
        self._submit()
        while self._in_flight:
            self._fold()
        self.close()
        return self.figures

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
