"""Header checks of large uploads in worker processes give exactly the sequential answers."""

from __future__ import annotations

import multiprocessing
import os
import zipfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from lungcad.errors import InvalidInput
from lungcad.imaging import Geometry
from lungcad.ingest import header_pool
from lungcad.ingest.dicom_header import DicomSummary
from lungcad.synthetic import write_dicom_series

SLICES = 80  # above MIN_PARALLEL, so two workers each read a slice of the files


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("series")
    hu = np.full((SLICES, 16, 16), -800, dtype=np.int16)
    geometry = Geometry(hu.shape, (1.0, 0.7, 0.7), (0.0, 0.0, 0.0))
    return write_dicom_series(hu, geometry, out, shuffle_names=False)


def _files(paths: Sequence[Path]) -> list[tuple[Path, int, str]]:
    return [(p, p.stat().st_size, p.name) for p in paths]


def _zip(paths: Sequence[Path], target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for path in paths:
            zf.write(path, f"study/{path.name}")
    return target


@pytest.fixture(autouse=True, scope="module")
def _pool_down() -> object:
    yield
    header_pool.shutdown()


def test_parallel_files_equal_sequential(series: list[Path]) -> None:
    files = _files(series)
    parallel = header_pool.in_slices(files, header_pool.summarize_files, workers=2)
    sequential = header_pool.in_slices(files, header_pool.summarize_files, workers=0)
    assert len(parallel) == SLICES
    assert parallel == sequential
    assert all(isinstance(s, DicomSummary) and s.is_ct_image for s in parallel)


def test_parallel_zip_equal_sequential(series: list[Path], tmp_path: Path) -> None:
    archive = _zip(series, tmp_path / "study.zip")
    names = [f"study/{p.name}" for p in series]
    read = partial(header_pool.summarize_zip_entries, archive)
    parallel = header_pool.in_slices(names, read, workers=2)
    assert parallel == header_pool.in_slices(names, read, workers=0)
    assert [s.series_uid for s in parallel if s] == [parallel[0].series_uid] * SLICES  # type: ignore[union-attr]


def test_first_bad_file_is_the_one_reported(series: list[Path], tmp_path: Path) -> None:
    """Two truncated files, one in each worker's slice: the earlier one is reported, as a
    sequential read would."""
    copies = []
    for i, path in enumerate(series):
        data = path.read_bytes()
        if i in (50, 70):
            data = data[: len(data) - 200]
        copy = tmp_path / path.name
        copy.write_bytes(data)
        copies.append(copy)
    with pytest.raises(InvalidInput) as parallel:
        header_pool.in_slices(_files(copies), header_pool.summarize_files, workers=2)
    with pytest.raises(InvalidInput) as sequential:
        header_pool.in_slices(_files(copies), header_pool.summarize_files, workers=0)
    assert parallel.value.code == sequential.value.code == "truncated_file"
    assert parallel.value.message == sequential.value.message
    assert series[50].name in parallel.value.message


def _die_in_child(files: Sequence[tuple[Path, int, str]]) -> list[DicomSummary | None]:
    if multiprocessing.parent_process() is not None:
        os._exit(3)  # a header that kills the reading process
    return header_pool.summarize_files(files)


def test_a_dead_child_falls_back_to_the_calling_thread(series: list[Path]) -> None:
    files = _files(series)
    found = header_pool.in_slices(files, _die_in_child, workers=2)
    assert found == header_pool.summarize_files(files)
    # the broken pool was replaced: the next large read uses a working one
    assert header_pool.in_slices(files, header_pool.summarize_files, workers=2) == found
