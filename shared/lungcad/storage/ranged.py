"""A stored object as a read-only, seekable binary file that reads only the byte ranges asked
for (``ObjectStore.read_range``): a zip member or a DICOM header without downloading the whole
object."""

from __future__ import annotations

import io

from lungcad.storage.base import ObjectStore

BUFFER = 256 * 1024


class RangedObject(io.RawIOBase):
    def __init__(self, store: ObjectStore, key: str) -> None:
        self._store = store
        self._key = key
        self.name = key  # what file readers (pydicom) report the file as
        self._size = store.size(key)  # raises ObjectNotFound
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), max(self._size - self._position, 0))
        if wanted == 0:
            return 0
        data = self._store.read_range(self._key, self._position, wanted)
        buffer[:len(data)] = data
        self._position += len(data)
        return len(data)


def open_ranged(store: ObjectStore, key: str, buffer_size: int = BUFFER) -> io.BufferedReader:
    """The object as a buffered binary file (each refill one range read)."""
    return io.BufferedReader(RangedObject(store, key), buffer_size=buffer_size)
