"""Some images of the original series, compressed, for a viewer that draws while it loads.

The stored stack (``original_series.npz``, int16 HU ``(n, rows, columns)``) is one DEFLATE
stream: to answer images ``start .. start + count - 1`` the gateway keeps the decoded stack of
the most recently read series in memory and compresses each image once, on first request, into
its own DEFLATE segment (level 1, ended by a full flush: byte-aligned, no reference to earlier
data). An answer is then the segments joined, after a segment holding the ``.npy`` header and
before the final empty block: a raw DEFLATE ``.npy`` of shape ``(count, rows, columns)``, as
the whole-stack answer is, with no compression per request.

Layouts of each image's bytes: ``c`` (the ``.npy`` as written, little-endian int16 in C order)
or ``planes`` (the image's low bytes, then its high bytes: the high bytes of CT numbers are
nearly constant and compress far better apart; the viewer interleaves them back).
"""

from __future__ import annotations

import io
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import numpy as np

Layout = Literal["c", "planes"]
FINAL_BLOCK = b"\x03\x00"  # an empty final block (fixed Huffman, end-of-block only)
KEPT_SERIES = 2  # decoded series kept in memory (about 160 MB each for 300 x 512 x 512)


def _segment(data: bytes) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush(zlib.Z_FULL_FLUSH)


def image_bytes(image: np.ndarray, layout: Layout) -> bytes:
    """One ``(rows, columns)`` int16 image as the answer lays it out."""
    little = np.ascontiguousarray(image, dtype="<i2")
    if layout == "c":
        return little.tobytes()
    pairs = little.view(np.uint8).reshape(-1, 2)
    return pairs[:, 0].tobytes() + pairs[:, 1].tobytes()


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (format 1.0) header of a little-endian int16 C-order array."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<i2", "fortran_order": False, "shape": shape})
    return buf.getvalue()


class SeriesPixels:
    """One decoded stack and the DEFLATE segments of its images made so far."""

    def __init__(self, hu: np.ndarray) -> None:
        self.hu = hu
        self._segments: dict[tuple[int, Layout], bytes] = {}

    @property
    def count(self) -> int:
        return int(self.hu.shape[0])

    def segment(self, k: int, layout: Layout) -> bytes:
        key = (k, layout)
        if key not in self._segments:  # a race makes the same bytes twice, harmlessly
            self._segments[key] = _segment(image_bytes(self.hu[k], layout))
        return self._segments[key]

    def images(self, start: int, count: int, layout: Layout) -> tuple[bytes, int]:
        """Raw DEFLATE of the ``.npy`` of images ``start .. start + count - 1`` and its
        inflated length. The caller checks the range."""
        _, rows, columns = self.hu.shape
        header = npy_header((count, rows, columns))
        body = b"".join([_segment(header), *(self.segment(k, layout)
                                             for k in range(start, start + count)),
                         FINAL_BLOCK])
        return body, len(header) + count * rows * columns * 2


class PixelCache:
    """The decoded stacks of the last ``size`` series read, by stored object (key, sha256)."""

    def __init__(self, size: int = KEPT_SERIES) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], SeriesPixels] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], load: Callable[[], np.ndarray]) -> SeriesPixels:
        """The series stored under ``key``; ``load()`` gives its int16 stack on a miss (one
        load at a time, so concurrent first requests decode it once)."""
        with self._lock:
            if key not in self._items:
                self._items[key] = SeriesPixels(load())
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            self._items.move_to_end(key)
            return self._items[key]


def decode_stack(npz: bytes, array: str) -> np.ndarray:
    """The int16 ``(n, rows, columns)`` array of a stored one-array ``.npz``."""
    with np.load(io.BytesIO(npz), allow_pickle=False) as archive:
        return np.ascontiguousarray(archive[array], dtype=np.int16)


CACHE = PixelCache()
