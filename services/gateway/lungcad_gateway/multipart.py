"""Streaming multipart reader (multipart/form-data, or multipart/related for STOW-RS): file
parts go straight to files on disk, hashed on the way, so a study is never held in memory.
Limits (body size, part count) are enforced while reading, and the request is refused as soon
as one is crossed."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import os
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from lungcad.errors import InvalidInput, PayloadTooLarge

MAX_FIELD_BYTES = 64 * 1024
FLUSH_BYTES = 1024 * 1024  # hand file data to the writer thread in 1 MiB blocks
MAX_IN_FLIGHT = 8  # blocks queued for the writer: bounds memory per upload to ~8 MiB
IOV_MAX = 1024  # buffers per writev call (the POSIX minimum limit is 16; Linux allows 1024)
SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = getattr(ctypes.CDLL(None, use_errno=True), "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to start writing these bytes to disk now, without waiting (sync_file_range),
    so the fsync that accepts the upload finds little left to write. A no-op elsewhere."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class _FileWriter:
    """Hashes one spooled part on one background thread and writes and fsyncs it on another,
    each in order, so the event loop only parses. hashlib and file writes release the GIL, so
    the hash and the page-cache copy run side by side.

    Chunks arrive as memoryviews into the request's body chunks (no copy on the event loop) and
    travel to the threads in batches of about ``FLUSH_BYTES``, written with one ``writev``."""

    def __init__(self, path: Path, writer: ThreadPoolExecutor, hasher: ThreadPoolExecutor
                 ) -> None:
        self._writer = writer
        self._hasher = hasher
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._hash = hashlib.sha256()
        self._batch: list[memoryview] = []
        self._batch_bytes = 0
        self._pending: deque[Future[None]] = deque()
        self._written = 0  # bytes handed to the kernel (writer thread only)
        self.size = 0

    def _update(self, views: list[memoryview]) -> None:
        for view in views:
            self._hash.update(view)

    def _write(self, views: list[memoryview]) -> None:
        start = self._written
        self._written += sum(len(v) for v in views)
        views = list(views)
        while views:
            written = os.writev(self._fd, views[:IOV_MAX])
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if written:
                views[0] = views[0][written:]
        start_writeback(self._fd, start, self._written - start)

    def _submit(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._pending.append(self._hasher.submit(self._update, batch))
        self._pending.append(self._writer.submit(self._write, batch))

    def backlog(self) -> Future[None] | None:
        """The oldest queued block once more than ``MAX_IN_FLIGHT`` are queued, else None."""
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()
        return self._pending[0] if len(self._pending) > 2 * MAX_IN_FLIGHT else None

    def write(self, chunk: memoryview) -> None:
        self.size += len(chunk)
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        if self._batch_bytes >= FLUSH_BYTES:
            self._submit()

    def finish(self) -> list[Future[Any]]:
        """Queue the last block and the fsync. Returns the work still pending and, last, the
        future of the SHA-256 once the part is on disk: the event loop awaits them after
        parsing instead of blocking on the disk inside a parser callback."""
        if self._batch:
            self._submit()
        digest = self._hasher.submit(self._hash.hexdigest)
        pending = [*self._pending, self._writer.submit(self._close, digest)]
        self._pending.clear()
        return pending

    def _close(self, digest: Future[str]) -> str:
        try:
            os.fsync(self._fd)  # accepted bytes are on disk before the job exists
        finally:
            os.close(self._fd)
        return digest.result()

    def abort(self) -> None:
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            if not future.cancelled():
                future.exception()
        os.close(self._fd)


@dataclass
class SpooledFile:
    path: Path
    original_name: str | None
    size: int = 0
    sha256: str = ""


@dataclass
class ParsedForm:
    """The parsed upload. Its file bytes are written (in the page cache) but may not be on disk
    yet: :meth:`settle` waits for each part's fsync and SHA-256, so the caller can inspect the
    files meanwhile. The owner calls :meth:`close` when done, settled or not."""

    files: list[SpooledFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    executors: list[ThreadPoolExecutor] = field(default_factory=list)
    durable: list[tuple[SpooledFile, Future[str]]] = field(default_factory=list)

    async def settle(self) -> None:
        for spooled, future in self.durable:
            spooled.sha256 = await asyncio.wrap_future(future)

    def close(self) -> None:
        """Never blocks: an fsync still queued (a refused upload) runs and closes its file on
        the writer thread after the spool folder is gone."""
        for executor in self.executors:
            executor.shutdown(wait=False)


class _Collector:
    def __init__(self, spool_dir: Path, file_field: str, max_files: int, max_fields: int,
                 part_type: bytes | None = None) -> None:
        self.spool_dir = spool_dir
        self.file_field = file_field
        self.part_type = part_type  # multipart/related: every part a file of this type
        self.max_files = max_files
        self.max_fields = max_fields
        self.form = ParsedForm()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-writer")
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-hasher")
        self._out: _FileWriter | None = None
        self._current: SpooledFile | None = None
        self._field_value = bytearray()
        self.closing: list[tuple[SpooledFile, list[Future[Any]]]] = []
        self.error: Exception | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field_cb,
            "on_header_value": self._header_value_cb, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._field_value = bytearray()

    def _header_field_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _related_part(self) -> None:
        kind, _ = parse_options_header(self._headers.get(b"content-type", b""))
        if kind != self.part_type:
            raise InvalidInput(f"Part {len(self.form.files) + 1} is "
                               f"{kind.decode('latin-1')[:100] or 'untyped'}; every part must be "
                               f"{self.part_type.decode()}.",  # type: ignore[union-attr]
                               code="unsupported_media_type", status=415)
        self._name = self.file_field

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self.part_type is not None:
            self._related_part()
        if filename is not None or self._name == self.file_field:
            if self._name != self.file_field:
                raise InvalidInput(f"Unexpected file field {self._name!r}; send files as "
                                   f"{self.file_field!r}.", code="unknown_field", status=400)
            if len(self.form.files) >= self.max_files:
                raise InvalidInput(f"More than {self.max_files} files in one upload.",
                                   code="too_many_files", status=400)
            ordinal = len(self.form.files)
            path = self.spool_dir / f"part-{ordinal:05d}"
            name = filename.decode("utf-8", "replace")[:500] if filename else None
            self._current = SpooledFile(path=path, original_name=name)
            self._out = _FileWriter(path, self._executor, self._hasher)
        else:
            if len(self.form.fields) >= self.max_fields:
                raise InvalidInput(f"More than {self.max_fields} form fields.",
                                   code="too_many_parts", status=400)
            self._current = None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None and self._out is not None:
            # bytes are immutable, so a view stays valid while the writer thread holds it
            view = memoryview(data if isinstance(data, bytes) else bytes(data))
            self._out.write(view[start:end])
        else:
            self._field_value += data[start:end]
            if len(self._field_value) > MAX_FIELD_BYTES:
                raise InvalidInput(f"Form field {self._name!r} is too long.",
                                   code="field_too_long", status=400)

    def _part_end(self) -> None:
        if self._current is not None and self._out is not None:
            self._current.size = self._out.size
            self.closing.append((self._current, self._out.finish()))
            self._out = None
            self.form.files.append(self._current)
            self._current = None
        else:
            if self._name in self.form.fields:
                raise InvalidInput(f"Form field {self._name!r} is repeated.",
                                   code="duplicate_field", status=400)
            self.form.fields[self._name] = self._field_value.decode("utf-8", "replace")

    async def complete(self) -> ParsedForm:
        """After the body's last byte: wait for the file writes (not the fsyncs, which
        :meth:`ParsedForm.settle` awaits) and hand the form over with its threads."""
        if self._current is not None:
            raise InvalidInput("The multipart body ended in the middle of a file.",
                               code="malformed_body", status=400)
        for spooled, futures in self.closing:  # writes, off the event loop
            for future in futures[:-1]:
                await asyncio.wrap_future(future)
            self.form.durable.append((spooled, futures[-1]))
        self.form.executors = [self._executor, self._hasher]
        return self.form

    async def drain(self) -> None:
        """Wait, without blocking the event loop, while the current part's queue is full."""
        while self._out is not None and (oldest := self._out.backlog()) is not None:
            await asyncio.wrap_future(oldest)

    def abort(self) -> None:
        if self._out is not None:
            self._out.abort()
            self._out = None
        self._executor.shutdown(wait=True)
        self._hasher.shutdown(wait=True)


def boundary_of(content_type: str, part_type: bytes | None = None) -> bytes:
    kind, options = parse_options_header(content_type)
    if part_type is not None:
        if (kind != b"multipart/related" or options.get(b"type", b"").lower() != part_type
                or not options.get(b"boundary")):
            raise InvalidInput(f"Send the instances as multipart/related; "
                               f"type=\"{part_type.decode()}\" with a boundary.",
                               code="unsupported_media_type", status=415)
        return options[b"boundary"]
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidInput("Send the study as multipart/form-data with repeated 'files' fields.",
                           code="unsupported_media_type", status=415)
    return options[b"boundary"]


async def read_form(stream: AsyncIterator[bytes], content_type: str, spool_dir: Path,
                    max_body: int, max_files: int, max_fields: int,
                    file_field: str = "files", part_type: bytes | None = None) -> ParsedForm:
    """Parse a multipart body from ``stream`` into ``spool_dir``; raise on any limit. Returns
    once every file byte is written; the fsyncs may still run (see :meth:`ParsedForm.settle`).
    ``part_type``: a multipart/related body whose every part has this media type."""
    collector = _Collector(spool_dir, file_field, max_files, max_fields, part_type)
    parser = MultipartParser(boundary_of(content_type, part_type), collector.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > max_body:
                raise PayloadTooLarge(f"The upload is over the {max_body}-byte limit.")
            parser.write(chunk)
            await collector.drain()
        parser.finalize()
        return await collector.complete()
    except MultipartParseError as exc:
        collector.abort()
        raise InvalidInput(f"The multipart body is malformed ({exc}).", code="malformed_body",
                           status=400) from exc
    except BaseException:
        collector.abort()
        raise

