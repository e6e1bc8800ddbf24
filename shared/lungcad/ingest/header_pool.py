"""DICOM header checks of large uploads in worker processes.

pydicom reads a header in about 0.2-0.7 ms of pure Python, holding the GIL: 300 slices cost the
gateway 60-200 ms during which its event loop answers nobody. Uploads with at least
``MIN_PARALLEL`` DICOM files are read by a small pool of processes instead, in contiguous
slices whose results come back in order, so the first bad file reported is the same as in a
sequential read. A hostile header that breaks a child process cannot take the gateway with it:
the pool is replaced and the slice is read again in the request's own thread.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import threading
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path, PurePosixPath
from typing import TypeVar

from lungcad.ingest.dicom_header import DicomSummary, read_summary

log = logging.getLogger(__name__)
MIN_PARALLEL = 64  # fewer files than this are cheaper to read in the calling thread
BUFFER = 64 * 1024  # read each entry through a C buffer: pydicom makes many small reads

T = TypeVar("T")
_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def summarize_zip_entries(path: Path, names: Sequence[str]) -> list[DicomSummary | None]:
    """Header summaries of the named entries of one zip, in order (runs in a child)."""
    out: list[DicomSummary | None] = []
    with zipfile.ZipFile(path) as zf:
        for name in names:
            info = zf.getinfo(name)
            with zf.open(info) as raw, io.BufferedReader(raw, BUFFER) as entry:  # type: ignore[arg-type]
                out.append(read_summary(entry, info.file_size, PurePosixPath(name).name))
    return out


def summarize_files(files: Sequence[tuple[Path, int, str]]) -> list[DicomSummary | None]:
    """Header summaries of (path, size, display name) files, in order (runs in a child)."""
    out: list[DicomSummary | None] = []
    for path, size, name in files:
        with open(path, "rb", buffering=BUFFER) as handle:
            out.append(read_summary(handle, size, name))
    return out


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            # forkserver: children start from a clean interpreter, not a copy of the gateway
            # with its threads and connections
            context = multiprocessing.get_context("forkserver")
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
            _pool_size = workers
        return _pool


def _discard_pool(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


def warm(workers: int) -> None:
    """Start the pool's processes now (gateway start-up), not on the first large upload."""
    if workers <= 1:
        return
    try:
        pool = _get_pool(workers)
        for future in [pool.submit(summarize_files, []) for _ in range(workers)]:
            future.result()
    except Exception:  # noqa: BLE001 - shut down meanwhile, or cannot fork: the first upload retries
        log.debug("header pool warm-up did not finish", exc_info=True)


def shutdown() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def in_slices(items: Sequence[T], fn: Callable[[Sequence[T]], list[DicomSummary | None]],
                 workers: int) -> list[DicomSummary | None]:
    """``fn`` over ``items``, split into one contiguous slice per worker process; sequential
    in this thread when the pool is off, the list is short, or the pool breaks."""
    if workers <= 1 or len(items) < MIN_PARALLEL:
        return fn(items)
    step = -(-len(items) // workers)
    slices = [items[i:i + step] for i in range(0, len(items), step)]
    pool = _get_pool(workers)
    try:
        futures: list[Future[list[DicomSummary | None]]] = [pool.submit(fn, s) for s in slices]
    except (BrokenProcessPool, RuntimeError):
        _discard_pool(pool)
        return fn(items)
    out: list[DicomSummary | None] = []
    for chunk, future in zip(slices, futures, strict=True):
        try:
            out.extend(future.result())
        except BrokenProcessPool:
            log.warning("a header-reading process died; reading %d files in the gateway",
                        len(chunk))
            _discard_pool(pool)
            out.extend(fn(chunk))
    return out
