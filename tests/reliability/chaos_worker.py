"""A real LungCAD Celery worker (solo pool) with test instrumentation, for the fault tests.

    python -m tests.reliability.chaos_worker -Q preprocess -n name@%h

Environment:
- ``LUNGCAD_CHAOS_LEDGER``: a file that gets one JSON line when a stage run starts and one when
  it ends (job, stage, attempt, pid, monotonic times), so a test can count runs per job and
  find two runs of one job that overlapped;
- ``LUNGCAD_CHAOS_SLOW_S``: sleep this long inside each stage (a stage longer than the broker's
  visibility timeout);
- ``LUNGCAD_CHAOS_PLANS=1``: an upload's first file name is a plan for its job, carried out on
  the job's first attempt (see :func:`_plan`):

  - ``race-<n>.zip``: the first run of each stage publishes a copy of its own task message
    (same task id, job and attempt) and holds until another worker of its queue has claimed or
    refused the copy, so the copy always meets the live lease;
  - ``kill-<stage>-<step>.zip``: the ``<stage>`` run publishes a copy of its own message, then
    the worker SIGKILLs itself inside the real ``<step>``, just after the function named in
    ``CHECKPOINTS`` returned (its work done, nothing committed); once per job. With no other
    worker on the queue, the copy waits for the worker started after the sweeper re-dispatched
    the job (attempt + 1), and so arrives stale.

The ledger also gets a ``ready`` line when the worker consumes, a ``parse`` line from each
parser child (its resident memory when forked, and its peak) and, with plans, a ``claim`` line
for every message's claim (claimed or refused, with the job's attempt then and whether a live
lease stood in the way), a ``copy`` line per published copy and a ``kill`` line before a
planned kill.

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
PLANS = os.environ.get("LUNGCAD_CHAOS_PLANS") == "1"
HOLD_S = 120.0  # the longest a race run waits for the other worker to meet its copy
# (stage, step) -> (module, function): the real function whose return is the kill point
CHECKPOINTS = {
    ("preprocess", "read"): ("lungcad_preprocess.pipeline", "read_input"),  # parser child
    ("preprocess", "resample"): ("lungcad_preprocess.resample", "resample"),  # parser child
    ("preprocess", "store"): ("lungcad_preprocess.tasks", "store_preprocessed"),
    ("inference", "read"): ("lungcad_preprocess.store", "load_preprocessed"),
    ("inference", "detect"): ("lungcad_inference", "detect"),
    ("inference", "store"): ("lungcad_inference.tasks", "store_results"),
}
_current: dict[str, Any] = {}  # the stage run in progress (a forked parser child inherits it)


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

    def run(session: Any, lease: Any, job: Any, *args: Any, **kwargs: Any) -> Any:
        _ledger(event="start", stage=stage, job=lease.job_id, attempt=lease.attempt)
        _current.clear()
        _current.update(stage=stage, job=lease.job_id, attempt=lease.attempt,
                        worker=os.getpid(), kill_at=None)
        if PLANS and lease.attempt == 1:
            _carry_out(_plan(job), stage, lease)
        if SLOW_S:
            time.sleep(SLOW_S)
        ok = False
        try:
            ok = original(session, lease, job, *args, **kwargs)
            return ok
        finally:
            _current.clear()
            _ledger(event="end", stage=stage, job=lease.job_id, attempt=lease.attempt, ok=ok)

    setattr(module, name, run)


def _plan(job: Any) -> list[str]:
    """``race-<n>.zip`` -> ["race"]; ``kill-<stage>-<step>.zip`` -> ["kill", stage, step]."""
    name = (job.inputs[0].original_name or "") if job.inputs else ""
    return name.removesuffix(".zip").split("-")


def _carry_out(plan: list[str], stage: str, lease: Any) -> None:
    if plan[0] == "race" and not any(e["event"] == "copy" and e["job"] == lease.job_id
                                     and e["stage"] == stage for e in _events()):
        _publish_copy(stage, lease)
        _hold_until_met(stage, lease)
    elif plan[0] == "kill" and plan[1] == stage and not any(
            e["event"] == "kill" and e["job"] == lease.job_id for e in _events()):
        _publish_copy(stage, lease)
        _current["kill_at"] = plan[2]


def _publish_copy(stage: str, lease: Any) -> None:
    """The same task message once more: what a broker redelivery or a relay that published
    twice hands a worker."""
    from lungcad.celery_app import TASK_INFERENCE, TASK_PREPROCESS
    from lungcad.worker import app

    task = TASK_PREPROCESS if stage == "preprocess" else TASK_INFERENCE
    app.send_task(task, args=[lease.job_id, lease.attempt], queue=stage, exchange="",
                  routing_key=stage, task_id=f"{lease.job_id}.{task}.{lease.attempt}",
                  retry=False)
    _ledger(event="copy", stage=stage, job=lease.job_id, attempt=lease.attempt)


def _hold_until_met(stage: str, lease: Any) -> None:
    deadline = time.monotonic() + HOLD_S
    me = os.getpid()
    while time.monotonic() < deadline:
        if any(e["event"] == "claim" and e["pid"] != me and e["job"] == lease.job_id
               and e["stage"] == stage and e["attempt"] == lease.attempt for e in _events()):
            return
        time.sleep(0.05)


def _events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(LEDGER).read_text().splitlines() if line]


def _checkpoint(stage: str, step: str) -> None:
    """Wrap the step's real function: SIGKILL the worker when it returns, if planned."""
    import importlib

    module_name, name = CHECKPOINTS[(stage, step)]
    module = importlib.import_module(module_name)
    original = getattr(module, name)

    def at_checkpoint(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if _current.get("stage") == stage and _current.get("kill_at") == step:
            worker = _current["worker"]
            _ledger(event="kill", stage=stage, step=step, job=_current["job"],
                    attempt=_current["attempt"], worker=worker)
            os.kill(worker, signal.SIGKILL)  # from a parser child: its parent, then itself
            time.sleep(10**6)
        return result

    setattr(module, name, at_checkpoint)


def _record_claims(module: Any, stage: str) -> None:
    from sqlalchemy import select

    from lungcad.db.models import Job
    from lungcad.db.types import utcnow

    original = module.claim_or_retry

    def claim_or_retry(task: Any, session: Any, job_id: str, attempt: int, *args: Any,
                       **kwargs: Any) -> Any:
        lease = original(task, session, job_id, attempt, *args, **kwargs)
        row = session.execute(select(Job.attempts, Job.lease_expires_at > utcnow())
                              .where(Job.id == job_id)).one()
        session.rollback()  # nothing to keep: the claim committed or was refused
        _ledger(event="claim", stage=stage, job=job_id, attempt=attempt,
                claimed=lease is not None, job_attempts=row[0], lease_live=bool(row[1]))
        return lease

    module.claim_or_retry = claim_or_retry


def _status_mib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) // 1024
    return -1


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
        forked_mib = _status_mib("VmRSS")
        try:
            marker = _poisoned(Path(path))
            if marker == b"CHAOS-SEGV":
                os.kill(os.getpid(), signal.SIGSEGV)
            elif marker == b"CHAOS-HANG":
                time.sleep(10**6)
            elif marker == b"CHAOS-KILL-WORKER":
                os.kill(os.getppid(), signal.SIGKILL)
                time.sleep(10**6)
            return original(path, options)
        finally:  # after a MemoryError too: the line needs little memory
            _ledger(event="parse", job=_current.get("job"), forked_mib=forked_mib,
                    peak_mib=_status_mib("VmHWM"))

    isolate.preprocess_path = preprocess_path


def main() -> None:
    from celery.signals import worker_ready

    import lungcad_inference.tasks as inference_tasks
    import lungcad_preprocess.tasks as preprocess_tasks
    from lungcad.worker import app

    _instrument(preprocess_tasks, "run_preprocess", "preprocess")
    _instrument(inference_tasks, "run_stage", "inference")
    if PLANS:
        _record_claims(preprocess_tasks, "preprocess")
        _record_claims(inference_tasks, "inference")
        for stage, step in CHECKPOINTS:
            _checkpoint(stage, step)
    _install_poison()
    worker_ready.connect(lambda **_: _ledger(event="ready"), weak=False)
    app.worker_main(["worker", "--pool", "solo", "--loglevel", "INFO", "--without-gossip",
                     "--without-mingle", "--without-heartbeat", *sys.argv[1:]])


if __name__ == "__main__":
    main()
