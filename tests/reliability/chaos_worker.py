"""A real LungCAD Celery worker (solo pool) with test instrumentation, for the fault tests.

    python -m tests.reliability.chaos_worker -Q preprocess -n name@%h

Environment:
- ``LUNGCAD_CHAOS_LEDGER``: a file that gets one JSON line when a stage run starts and one when
  it ends (job, stage, attempt, pid, monotonic times), so a test can count runs per job and
  find two runs of one job that overlapped;
- ``LUNGCAD_CHAOS_SLOW_S``: sleep this long inside each stage (a wider window for kills, or a
  stage longer than the broker's visibility timeout);

Poison inputs: a DICOM whose bytes hold ``CHAOS-SEGV`` makes the parser child die of SIGSEGV,
``CHAOS-HANG`` makes it hang, and ``CHAOS-KILL-WORKER`` makes it SIGKILL the worker itself,
every time it is read.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

LEDGER = os.environ.get("LUNGCAD_CHAOS_LEDGER", "")
SLOW_S = float(os.environ.get("LUNGCAD_CHAOS_SLOW_S", "0") or 0)


def _ledger(**entry: Any) -> None:
    if not LEDGER:
        return
    line = (json.dumps({**entry, "pid": os.getpid(), "t": time.time()}) + "\n").encode()
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one O_APPEND write: whole lines even with several workers
    finally:
        os.close(fd)


def _instrument(module: Any, name: str, stage: str) -> None:
    original = getattr(module, name)

    def run(session: Any, lease: Any, *args: Any, **kwargs: Any) -> Any:
        _ledger(event="start", stage=stage, job=lease.job_id, attempt=lease.attempt)
        if SLOW_S:
            time.sleep(SLOW_S)
        ok = False
        try:
            ok = original(session, lease, *args, **kwargs)
            return ok
        finally:
            _ledger(event="end", stage=stage, job=lease.job_id, attempt=lease.attempt, ok=ok)

    setattr(module, name, run)


def _poisoned(path: Path) -> bytes | None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        data = file.read_bytes()
        for marker in (b"CHAOS-SEGV", b"CHAOS-HANG", b"CHAOS-KILL-WORKER"):
            if marker in data:
                return marker
    return None


def _install_poison() -> None:
    import lungcad_preprocess.isolate as isolate

    original = isolate.preprocess_path

    def preprocess_path(path: Path, options: Any) -> Any:  # runs in the forked parser child
        marker = _poisoned(Path(path))
        if marker == b"CHAOS-SEGV":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif marker == b"CHAOS-HANG":
            time.sleep(10**6)
        elif marker == b"CHAOS-KILL-WORKER":
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(10**6)
        return original(path, options)

    isolate.preprocess_path = preprocess_path


def main() -> None:
    import lungcad_inference.tasks as inference_tasks
    import lungcad_preprocess.tasks as preprocess_tasks
    from lungcad.worker import app

    _instrument(preprocess_tasks, "run_preprocess", "preprocess")
    _instrument(inference_tasks, "run_stage", "inference")
    _install_poison()
    app.worker_main(["worker", "--pool", "solo", "--loglevel", "INFO", "--without-gossip",
                     "--without-mingle", "--without-heartbeat", *sys.argv[1:]])


if __name__ == "__main__":
    main()
