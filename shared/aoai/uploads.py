"""Uploading content without holding it in memory: byte sources, and the Uploads API of the v1 surface.

The v1 surface has no files import (the service cannot fetch a SAS URL itself), so content travels through
the app: ``POST /files`` (multipart) for a file of one part, else the Uploads API::

    POST /uploads                     {filename, purpose, bytes, mime_type}       -> upload (pending)
    POST /uploads/{id}/parts          multipart ``data`` (at most 64 MB a part)  -> upload.part
    POST /uploads/{id}/complete       {part_ids: [...] in order}                 -> upload (completed) + file
    POST /uploads/{id}/cancel                                                    -> upload (cancelled)

A :class:`ByteSource` hands out byte ranges as iterators (a blob snapshot read with ranged downloads, in
``shared.imports``); each part is one range, streamed into its request by a :class:`RangeReader`, so memory
stays at a chunk per request whatever the file's size (with an Entra ID credential httpx buffers one part's
body, to replay it on a 401: at most ``upload_part_bytes``). Where the Uploads API answers 404, the file goes
as one streamed ``POST /files``. Sources: docs/azure-openai-contract.md, "The v1 surface".

Retries: creating an upload and adding a part change nothing that matters twice (a part not named in the
complete call is ignored, an upload never completed expires after an hour and makes no file), so both are
retried like reads; ``complete`` makes the file and is not: an ambiguous failure there raises with
``ambiguous=True`` and the caller reconciles by the file's name.
"""

from __future__ import annotations

import io
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ._base import seg
from .api_versions import Feature
from .errors import APIStatusError, NotFoundError
from .models import FileObject, Upload, UploadPart

if TYPE_CHECKING:
    from .client import AzureOpenAIClient

__all__ = ["DEFAULT_PART_BYTES", "MAX_PART_BYTES", "ByteSource", "BytesSource", "RangeReader", "Uploads"]

MAX_PART_BYTES = 64 * 1024 * 1024
"""The largest part the Uploads API takes (64 MB)."""
DEFAULT_PART_BYTES = MAX_PART_BYTES
"""Part size, and the size above which a file goes through the Uploads API instead of one ``POST /files``."""
JSONL_MIME_TYPE = "application/jsonl"
logger = logging.getLogger("shared.aoai")


class ByteSource(ABC):
    """Content of a known size that can be read from any offset (again, for a retried request)."""

    @property
    @abstractmethod
    def size(self) -> int: ...

    @abstractmethod
    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        """The bytes ``[offset, offset + length)`` in chunks of the source's choosing."""

    def reader(self, offset: int, length: int) -> RangeReader:
        return RangeReader(self, offset, length)


class BytesSource(ByteSource):
    """Bytes already in memory (tests, small files)."""

    def __init__(self, data: bytes, chunk_size: int = 1 << 16) -> None:
        self._data = data
        self._chunk = chunk_size

    @property
    def size(self) -> int:
        return len(self._data)

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        end = offset + length
        for start in range(offset, end, self._chunk):
            yield self._data[start : min(start + self._chunk, end)]


class RangeReader(io.RawIOBase):
    """A file-like view of one range of a :class:`ByteSource`: httpx reads it in chunks into a multipart body,
    asks its length by seeking to the end, and seeks back to 0 to send it again on a retry."""

    def __init__(self, source: ByteSource, offset: int, length: int) -> None:
        super().__init__()
        self._source, self._offset, self._length = source, offset, length
        self._pos = 0  # where the reader is, as the caller sees it
        self._stream_pos = 0  # where the open chunk iterator is
        self._chunks: Iterator[bytes] | None = None
        self._pending = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._pos >= self._length:
            return 0
        if self._chunks is None or self._stream_pos != self._pos:
            self._chunks = self._source.chunks(self._offset + self._pos, self._length - self._pos)
            self._stream_pos, self._pending = self._pos, b""
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise OSError(f"the source ended {self._length - self._pos} bytes before its range did")
            self._pending = chunk
        n = min(len(buffer), len(self._pending), self._length - self._pos)
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._pos += n
        self._stream_pos += n
        return n


class Uploads:
    """``/openai/v1/uploads``: large files in parts (v1 surface only)."""

    def __init__(self, client: AzureOpenAIClient) -> None:
        self._c = client

    def create(
        self, filename: str, size: int, *, purpose: str = "fine-tune", mime_type: str = JSONL_MIME_TYPE
    ) -> Upload:
        body = {"filename": filename, "purpose": purpose, "bytes": size, "mime_type": mime_type}
        params = self._c._params_for([Feature.UPLOADS])
        return self._c._parse(Upload, self._c._send("POST", "uploads", params=params, json=body, idempotent=True))

    def add_part(self, upload_id: str, data: io.RawIOBase | bytes) -> UploadPart:
        response = self._c._send(
            "POST",
            f"uploads/{seg(upload_id)}/parts",
            params=self._c._params_for([Feature.UPLOADS]),
            files={"data": ("part", data, "application/octet-stream")},
            idempotent=True,
        )
        return self._c._parse(UploadPart, response)

    def complete(self, upload_id: str, part_ids: list[str]) -> Upload:
        response = self._c._send(
            "POST",
            f"uploads/{seg(upload_id)}/complete",
            params=self._c._params_for([Feature.UPLOADS]),
            json={"part_ids": part_ids},
            idempotent=False,
        )
        return self._c._parse(Upload, response)

    def cancel(self, upload_id: str) -> Upload:
        response = self._c._send(
            "POST", f"uploads/{seg(upload_id)}/cancel", params=self._c._params_for([Feature.UPLOADS]), idempotent=True
        )
        return self._c._parse(Upload, response)

    def upload_in_parts(self, filename: str, source: ByteSource, *, purpose: str = "fine-tune") -> FileObject:
        """Create an upload, add ``source`` one range of ``upload_part_bytes`` at a time, complete it; return the
        file. A part refused for good cancels the upload (best effort) before the error is raised.

        Where the service has no Uploads API (a 404 on create: Microsoft's fine-tuning skill reports it for
        project endpoints) the file goes as one ``POST /files`` instead, streamed all the same."""
        part_bytes = self._c.upload_part_bytes
        try:
            upload = self.create(filename, source.size, purpose=purpose)
        except NotFoundError as exc:
            logger.warning("the Uploads API answered 404 (%s): sending %s as one POST /files", exc.message, filename)
            return self._c.files.upload(filename, source.reader(0, source.size), purpose=purpose)
        part_ids: list[str] = []
        try:
            for index in range(math.ceil(source.size / part_bytes)):
                offset = index * part_bytes
                part = self.add_part(upload.id, source.reader(offset, min(part_bytes, source.size - offset)))
                part_ids.append(part.id)
        except APIStatusError:
            try:
                self.cancel(upload.id)
            except APIStatusError:
                pass  # it expires after an hour anyway, and an upload never completed makes no file
            raise
        done = self.complete(upload.id, part_ids)
        if done.file is None:
            raise APIStatusError(
                f"upload {upload.id} completed without a file", status_code=200, body=done.model_dump(mode="json")
            )
        return done.file
