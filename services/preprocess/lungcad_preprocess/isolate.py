"""Run preprocessing in a forked, memory-limited child with a timeout.

A parser that segfaults, exhausts memory or hangs then fails one job with ``parser_crashed``,
``parser_out_of_memory`` or ``parser_timeout`` instead of taking the worker (and the other jobs
it would run) down. The child writes its result as ``.npy`` arrays and JSON into a private
temporary folder; nothing is pickled. Linux / POSIX only (``os.fork``); the Celery prefork pool
runs tasks in daemonic children where ``multiprocessing`` refuses to start processes.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lungcad.errors import ProcessingError
from lungcad.imaging import Geometry
from lungcad_preprocess.pipeline import Preprocessed, PreprocessOptions, preprocess_path

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the worker that forked it dies (killed, OOM), so an
    orphaned parser never keeps running, and holding memory, on its own."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _child(path: Path, options: PreprocessOptions, out: Path, memory_limit: int,
           parent: int) -> int:
    _die_with_parent()
    if os.getppid() != parent:  # the worker died before the line above took effect
        return 2
    try:
        if memory_limit > 0:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        result = preprocess_path(path, options)
        np.save(out / "hu.npy", result.hu)
        np.save(out / "lungs.npy", result.lungs)
        (out / "result.json").write_text(json.dumps({"meta": result.meta,
                                                     "timings_s": result.timings_s}))
        return 0
    except ProcessingError as exc:
        error = {"code": exc.code, "message": exc.message}
    except MemoryError:
        error = {"code": "parser_out_of_memory",
                 "message": f"Reading the upload needed more than {memory_limit / 2**30:.1f} GiB "
                            "of memory."}
    except Exception as exc:  # noqa: BLE001 - any parser bug must become a job failure
        log.error("preprocessing crashed", extra={"traceback": traceback.format_exc()})
        error = {"code": "parser_crashed",
                 "message": f"The input could not be parsed ({type(exc).__name__}: "
                            f"{str(exc)[:300]})."}
    (out / "error.json").write_text(json.dumps(error))
    return 1


def preprocess_isolated(path: Path, options: PreprocessOptions, *, memory_limit_bytes: int,
                        timeout_s: float, on_wait: Callable[[], bool] | None = None,
                        wait_interval_s: float = 10.0) -> Preprocessed:
    """:func:`preprocess_path` in a child process.

    ``on_wait`` is called every ``wait_interval_s`` while the child runs (e.g. a lease heartbeat);
    when it returns False the child is killed and ProcessingError ``canceled`` is raised.
    """
    with tempfile.TemporaryDirectory(prefix="lungcad-pre-") as tmp:
        out = Path(tmp)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # child
            code = 2
            try:
                code = _child(path, options, out, memory_limit_bytes, parent)
            finally:
                os._exit(code)
        start = last = time.monotonic()
        status = None
        while status is None:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
                break
            now = time.monotonic()
            if now - start > timeout_s:
                _kill(pid)
                raise ProcessingError(f"Reading the upload took longer than {timeout_s:.0f} s.",
                                      code="parser_timeout")
            if on_wait is not None and now - last >= wait_interval_s:
                last = now
                if not on_wait():
                    _kill(pid)
                    raise ProcessingError("The job was canceled.", code="canceled")
            time.sleep(0.02)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            raise ProcessingError(f"The parser crashed on this input (signal "
                                  f"{signal.Signals(sig).name}).", code="parser_crashed")
        if (out / "error.json").exists():
            error = json.loads((out / "error.json").read_text())
            raise ProcessingError(error["message"], code=error["code"])
        if not (out / "result.json").exists():
            raise ProcessingError("The parser exited without a result.", code="parser_crashed")
        result = json.loads((out / "result.json").read_text())
        hu, lungs = np.load(out / "hu.npy"), np.load(out / "lungs.npy")
    meta = result["meta"]
    return Preprocessed(hu, lungs, Geometry.from_dict(meta["geometry"]), meta,
                        result["timings_s"])


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
