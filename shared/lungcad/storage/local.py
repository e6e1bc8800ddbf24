"""Local-directory backend: the embedded default. Writes are atomic (temp file + rename)."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lungcad.storage.base import (
    CHUNK,
    HashingReader,
    ObjectNotFound,
    ObjectStore,
    StorageUnavailable,
    StoredObject,
    check_key,
)


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (a file created or renamed in it) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise ValueError(f"key {key!r} escapes the store")
        return path

    def put_stream(self, key: str, stream: BinaryIO, content_type: str = "application/octet-stream",
                   size: int | None = None) -> StoredObject:
        path = self._path(key)
        reader = HashingReader(stream)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := reader.read(CHUNK):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
                fsync_dir(path.parent)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageUnavailable(f"local store write failed: {exc}") from exc
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def put_file(self, key: str, path: Path, sha256: str | None = None,
                 content_type: str = "application/octet-stream") -> StoredObject:
        """With ``sha256`` given, the caller has fsynced ``path``; it is moved, not copied."""
        if sha256 is None:
            return super().put_file(key, path, sha256, content_type)
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            size = path.stat().st_size
            os.replace(path, target)  # same file system: a rename, no second copy of the bytes
            fsync_dir(target.parent)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return super().put_file(key, path, None, content_type)
            raise StorageUnavailable(f"local store write failed: {exc}") from exc
        return StoredObject(key=key, size=size, sha256=sha256)

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list_keys(self, prefix: str) -> list[str]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.exists():
            return []
        keys = []
        for path in start.rglob("*"):
            if path.is_file() and not path.name.startswith(".part-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        count = super().delete_prefix(prefix)
        # Remove the now-empty directories under the prefix.
        base = self.root / prefix.rstrip("/")
        if base.is_dir():
            for directory in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
                if not any(directory.iterdir()):
                    directory.rmdir()
            if not any(base.iterdir()):
                base.rmdir()
        return count

    def ping(self) -> None:
        # is_dir as well: for root, os.access says a file (the volume gone) is writable
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"local store {self.root} is not a writable folder")
