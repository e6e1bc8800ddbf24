"""Some images of the original series as joined DEFLATE segments (original_pixels)."""

from __future__ import annotations

import io
import zlib

import numpy as np

from lungcad_gateway.original_pixels import PixelCache, SeriesPixels, image_bytes


def inflate(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(body, -15)), allow_pickle=False)


def stack() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(-3024, 3071, size=(7, 5, 6)).astype(np.int16)


def test_images_are_the_asked_images_whatever_was_compressed_before() -> None:
    hu = stack()
    pixels = SeriesPixels(hu)
    for start, count in [(3, 1), (0, 7), (2, 4), (6, 1), (1, 3)]:  # segments made earlier reused
        body, inflated = pixels.images(start, count, "c")
        array = inflate(body)
        assert array.dtype == np.dtype("<i2") and array.shape == (count, 5, 6)
        assert np.array_equal(array, hu[start:start + count])
        assert len(zlib.decompress(body, -15)) == inflated


def test_planes_layout_is_each_images_low_bytes_then_high_bytes() -> None:
    hu = stack()
    body, _ = SeriesPixels(hu).images(2, 3, "planes")
    raw = inflate(body).view(np.uint8).reshape(3, 2, 30)
    low, high = raw[:, 0].astype(np.int16), raw[:, 1].astype(np.int16)
    assert np.array_equal((low | (high << 8)).reshape(3, 5, 6), hu[2:5])
    assert image_bytes(hu[0], "c") == hu[0].astype("<i2").tobytes()


def test_the_cache_loads_a_series_once_and_keeps_the_latest() -> None:
    cache = PixelCache(size=2)
    loads: list[str] = []

    def loader(name: str):  # noqa: ANN202
        return lambda: loads.append(name) or stack()

    first = cache.get(("a", "1"), loader("a"))
    assert cache.get(("a", "1"), loader("a")) is first
    cache.get(("b", "1"), loader("b"))
    cache.get(("a", "1"), loader("a"))  # a is now the latest: c evicts b
    cache.get(("c", "1"), loader("c"))
    cache.get(("a", "1"), loader("a"))
    cache.get(("b", "1"), loader("b"))
    assert loads == ["a", "b", "c", "b"]
    cache.get(("a", "2"), loader("a2"))  # a new sha256 (a rebuilt stack) is another series
    assert loads[-1] == "a2"
