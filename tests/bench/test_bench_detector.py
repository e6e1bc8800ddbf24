"""The sliding-window arithmetic behind the RetinaNet estimate of ``bench/bench_detector.py``
(pure; MONAI is only needed for the cross-check against MONAI's own functions)."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_detector.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_detector", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_detector", module)
    spec.loader.exec_module(module)
    return module


def test_lung_box_resampled_to_the_bundle_spacing(bench: ModuleType) -> None:
    # LIDC-IDRI-0003's lung box on the 1 mm grid, (z, y, x) -> (x, y, z) at 0.703 x 0.703 x 1.25
    assert bench.box_at_spacing((311, 221, 339), (1.0, 1.0, 1.0),
                                bench.BUNDLE.spacing_mm) == (482, 314, 249)


def test_window_count_for_a_lung_box(bench: ModuleType) -> None:
    box, b = (482, 314, 249), bench.BUNDLE
    # padded to (496, 320, 256); 192 x 192 x 80 windows every 144 / 144 / 60 voxels: 4 x 2 x 4
    assert bench.sliding_window_count(box, (192, 192, 80), b.overlap, b.size_divisible) == 32
    # the bundle's 512 x 512 x 192 windows: x and y padded up to one window, z needs two
    assert bench.sliding_window_count(box, b.infer_roi, b.overlap, b.size_divisible) == 2


def test_an_image_smaller_than_the_window_is_one_window(bench: ModuleType) -> None:
    assert bench.sliding_window_count((100, 90, 40), (192, 192, 80), 0.25, (16, 16, 8)) == 1
    assert bench.windows_along(192, 192, 0.25) == 1
    assert bench.windows_along(193, 192, 0.25) == 2


def test_window_count_matches_monai(bench: ModuleType) -> None:
    pytest.importorskip("monai", reason="not run by `make test` or CI: MONAI is a bench-only "
                        "extra (pip install --no-deps -r requirements-bench.txt to run it); "
                        "bench/bench_detector.py makes the same check per study when it runs "
                        "with MONAI")
    sizes = (50, 192, 200, 337, 512, 513, 700)
    for image in itertools.product(sizes, sizes, (40, 80, 81, 249, 300)):
        for roi in ((192, 192, 80), (512, 512, 192)):
            assert bench.sliding_window_count(image, roi, 0.25, (16, 16, 8)) == \
                bench.monai_window_count(image, roi, 0.25, (16, 16, 8)), (image, roi)
