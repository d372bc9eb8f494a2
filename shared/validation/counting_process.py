"""A forked process that counts a validation's tokens on the second core while the parsing thread keeps the first.

**Why.** The parsing thread is pure Python and holds the GIL. The chunk table's numpy look-ups
(chunk_counts.py) cannot run beside it on a thread: each numpy call releases the GIL and then waits for it
(measured: 0.8 s of look-ups took 100 s on a thread beside a busy parsing thread). So in one process they
take the parsing thread's time. A child forked from the validating process has its own interpreter and GIL:
it is sent each batch's texts, counts them with the same `Tokenizer.count_many` (the chunk table, then
tiktoken for the chunks it lacks) and sends the counts back, while the parent goes on parsing. The counts
are the same by construction: the same code, on the same strings, in a copy of the same process.

**When** (`wanted`): `validate` forks one before it loads anything of the encoding, for a source known to be
larger than one batch (`bytes`, or a regular file), and only where it is safe and pays (`fork_allowed`): on
Linux (`os.fork` exists, and unlike macOS's its system libraries are fork-safe), with at least 2 usable CPUs
(on one core the child would only take turns with the parent), and no other Python thread running.
Forking a process with other threads (the Functions host's worker has gRPC threads) can leave the child
holding locks that belong to threads it does not have. Otherwise `TokenPipeline` uses worker threads, as
before. The child counts the role names first (the parent never
loads the encoding's ranks), and serves the training file and then the validation file.

**Protocol.** There are two pipes. Each frame is an 8-byte little-endian length and then the payload. From
parent to child the payload is `marshal.dumps(list of str)`: marshal keeps lone surrogates, and both ends are
the same interpreter, since one is a fork of the other. From child to parent it is the int64 counts. The
parent's writes are non-blocking: whenever the pipe to the child is full, it first reads what the child has
answered (`select`). So the child never waits on a full answer pipe while the parent waits on a full request
pipe, and neither can wait on the other forever.

**Failures.** If the child dies or sends a wrong answer, `result` returns None for every batch it still owed,
and the caller counts those batches itself, so the report is the same. `lost` records that this happened;
`error` holds the one line the child sends when it fails with an exception (also logged at INFO: nothing is
lost, and the CLI keeps its one-line errors, e.g. an encoding that cannot be loaded offline).
The child stops at the end of its input (the parent closed its pipe, or died). It ignores SIGINT, which the
parent handles, and leaves with `os._exit`, so none of the parent's exit handlers run in it. The parent
reaps it in `close`, which returns the child's resource usage.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import os
import resource
import select
import signal
import struct
import sys
import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .tokens import Tokenizer

_I64 = npt.NDArray[np.int64]
_LENGTH = struct.Struct("<Q")
_READ_BYTES = 1 << 20
_FAILED = 1 << 63  # in a frame's length: the payload is the child's error, not counts
log = logging.getLogger(__name__)
PIPE_BYTES = 1 << 20  # Linux's default most an unprivileged process may ask for (/proc/sys/fs/pipe-max-size)


def fork_allowed(cpus: int) -> bool:
    """Whether a counting process may be forked now: it can be, it gains a core, and it is safe. Linux only:
    on macOS system libraries are not fork-safe (Python's multiprocessing stopped forking there by default in
    3.8), and Windows has no fork."""
    return hasattr(os, "fork") and sys.platform.startswith("linux") and cpus >= 2 and threading.active_count() == 1


def wanted(choice: bool | None, size: int | None, batch_bytes: int, cpus: int) -> bool:
    """Whether to fork one: as `choice` says (`ValidationOptions.counting_process`), or when None, for a source
    of more than one batch where `fork_allowed`."""
    if choice is not None:
        return choice
    return size is not None and size > batch_bytes and fork_allowed(cpus)


class CountingProcess:
    """One forked child that counts batches of texts in the order they are sent (see the module's docstring)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        to_child, requests = os.pipe()
        answers, from_child = os.pipe()
        for fd in (requests, answers):
            _widen(fd)
        pid = os.fork()
        if pid == 0:  # the child: count until the parent is done, then leave without its exit handlers
            code = 1
            try:
                os.close(requests)
                os.close(answers)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                _serve(tokenizer, to_child, from_child)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - anything: the parent is told why, and counts for itself
                _say_why(from_child, exc)
            finally:
                os._exit(code)
        os.close(to_child)
        os.close(from_child)
        os.set_blocking(requests, False)
        os.set_blocking(answers, False)
        self.pid = pid
        self._requests = requests
        self._answers = answers
        self._unsent: deque[memoryview] = deque()  # frames not yet written, in order
        self._inbox = bytearray()
        self._ready: deque[_I64] = deque()
        self._owed: deque[int] = deque()  # the number of texts of each batch sent and not yet answered
        self.alive = True
        self.lost = False  # the child died or misbehaved: the batches it owed were counted here
        self.error: str | None = None  # what the child said went wrong, if it could

    @property
    def unsent(self) -> bool:
        """Whether frames wait to be written: `pump` then moves them on."""
        return bool(self._unsent)

    def submit(self, texts: Sequence[str]) -> None:
        """Queue a batch and write what the pipe takes now; its counts come back, in order, from `result`."""
        self._owed.append(len(texts))
        if self.alive:
            payload = marshal.dumps(list(texts))
            self._unsent.append(memoryview(_LENGTH.pack(len(payload))))
            self._unsent.append(memoryview(payload))
            self.pump()

    def pump(self) -> None:
        """Write what the pipe to the child takes and read what it has answered, never waiting."""
        unsent = self._unsent
        try:
            while unsent:
                view = unsent[0]
                written = os.write(self._requests, view)
                if written < len(view):
                    unsent[0] = view[written:]
                    break
                unsent.popleft()
        except BlockingIOError:
            pass
        except OSError:  # BrokenPipeError: the child is leaving
            self._give_up(kill=False)
        self._read()

    def result(self) -> _I64 | None:
        """The counts of the oldest batch not yet returned, waiting for them; None if the child cannot give them."""
        owed = self._owed.popleft()
        while not self._ready and self.alive:
            writing = [self._requests] if self._unsent else []
            select.select([self._answers], writing, [])
            self.pump()
        if not self._ready:
            return None
        counts = self._ready.popleft()
        if counts.size != owed:
            self._give_up()
            return None
        return counts

    def close(self) -> resource.struct_rusage | None:
        """End the child (at once if it still owes batches) and reap it; its resource usage, if it was reaped."""
        for fd in (self._requests, self._answers):
            with contextlib.suppress(OSError):  # closed already (close runs twice: validate's and its caller's)
                os.close(fd)
        self._requests = self._answers = -1
        self._unsent.clear()
        if self.pid <= 0:
            return None
        if self.alive and (self._owed or self._ready):  # an early end: what it still counts is not wanted
            self._kill()
        try:
            _, _, usage = os.wait4(self.pid, 0)
        except ChildProcessError:
            usage = None
        self.pid = 0
        self.alive = False
        return usage

    def _read(self) -> None:
        while self.alive:
            try:
                data = os.read(self._answers, _READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the child is leaving (it may still be saying why): what it answered in full counts
                self._give_up(kill=False)
                return
            self._unpack(data)

    def _unpack(self, data: bytes) -> None:
        inbox = self._inbox
        inbox += data
        at = 0
        while len(inbox) - at >= _LENGTH.size:
            (n,) = _LENGTH.unpack_from(inbox, at)
            size = n & ~_FAILED
            if len(inbox) - at - _LENGTH.size < size:
                break
            start = at + _LENGTH.size
            payload = bytes(inbox[start : start + size])
            at = start + size
            if n & _FAILED:
                self.error = payload.decode("utf-8", "replace")
                log.info("the token counting process failed (%s): its batches are counted here", self.error)
            else:
                self._ready.append(np.frombuffer(payload, dtype=np.int64))
        del inbox[:at]

    def _give_up(self, *, kill: bool = True) -> None:
        if self.alive:
            self.alive = False
            self.lost = True
            self._unsent.clear()
            if kill:
                self._kill()

    def _kill(self) -> None:
        with contextlib.suppress(OSError):  # gone already
            os.kill(self.pid, signal.SIGKILL)


def _widen(fd: int) -> None:
    """A pipe of `PIPE_BYTES` where Linux allows it (fewer, shorter stalls); the default 64 KB elsewhere."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):  # refused: the default size
            fcntl.fcntl(fd, set_size, PIPE_BYTES)


def _serve(tokenizer: Tokenizer, requests_fd: int, answers_fd: int) -> None:
    """The child's loop: a batch in, its counts out, until the parent closes the pipe. The first request is the
    role names; the encoding is loaded for it, and a core (small or full) only when a batch needs one."""
    # closefd=False: on an error the answer pipe stays open for `_say_why` (os._exit closes both)
    with open(requests_fd, "rb", closefd=False) as requests, open(answers_fd, "wb", closefd=False) as answers:
        while True:
            payload = _frame(requests)
            if payload is None:
                return
            counts = tokenizer.count_many(marshal.loads(payload)).astype(np.int64, copy=False).tobytes()
            answers.write(_LENGTH.pack(len(counts)))
            answers.write(counts)
            answers.flush()


def _say_why(answers_fd: int, exc: BaseException) -> None:
    """A last frame, flagged: the error in one line (no traceback: the report is complete without the child)."""
    why = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:4096]
    with contextlib.suppress(OSError):  # written straight to the descriptor: os._exit flushes no Python buffer
        os.set_blocking(answers_fd, True)
        os.write(answers_fd, _LENGTH.pack(_FAILED | len(why)) + why)


def _frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    (n,) = _LENGTH.unpack(header)
    payload = stream.read(n)
    return payload if len(payload) == n else None
