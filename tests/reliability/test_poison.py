"""Poison jobs: inputs that crash the parser, hang it, or kill the worker every time they are
read end ``failed`` after a bounded number of attempts, never loop, and leave the other jobs
running."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lungcad.db.models import OutboxMessage
from tests.conftest import start_gateway
from tests.reliability.conftest import (
    ChaosWorker,
    fault_settings,
    marked_zip,
    preprocessed,
    read_ledger,
    report,
    stage_runs,
    submit,
    tiny_ct_zip,
)


def test_poison_jobs_fail_bounded_and_others_run(tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    settings = fault_settings(tmp_path, request, preprocess_timeout_s=5)
    server, gw = start_gateway(settings)
    ledger = tmp_path / "ledger.jsonl"
    worker = ChaosWorker(settings, "preprocess", ledger)
    restarts = 0
    good = tiny_ct_zip(seed=1)
    try:
        with gw.client() as client:
            # Baseline: good jobs alone.
            t0 = time.monotonic()
            base_ids = [submit(client, good).json()["id"] for _ in range(3)]
            base = _wait(client, base_ids, worker, settings, ledger, 120)
            baseline_s = time.monotonic() - t0
            assert all(preprocessed(j) for j in base.values()), base
            # Poison among good jobs.
            t0 = time.monotonic()
            poison = {marker: submit(client, marked_zip(marker)).json()["id"]
                      for marker in ("CHAOS-SEGV", "CHAOS-HANG", "CHAOS-KILL-WORKER")}
            good_ids = [submit(client, good).json()["id"] for _ in range(3)]
            jobs, restarts, worker = _wait_supervised(client, [*poison.values(), *good_ids],
                                                      worker, settings, ledger, 180)
            poisoned_s = time.monotonic() - t0
        states = {m: (jobs[i]["state"], jobs[i]["error_code"], jobs[i]["attempts"])
                  for m, i in poison.items()}
        assert states["CHAOS-SEGV"] == ("failed", "parser_crashed", 1), states
        assert states["CHAOS-HANG"] == ("failed", "parser_timeout", 1), states
        assert states["CHAOS-KILL-WORKER"][:2] == ("failed", "worker_lost"), states
        assert states["CHAOS-KILL-WORKER"][2] == settings.max_attempts, states
        assert all(preprocessed(jobs[i]) and jobs[i]["state"] != "failed" for i in good_ids)
        runs = stage_runs(read_ledger(ledger))
        time.sleep(3)  # no loop: nothing more is dispatched or run for a failed poison job
        with gw.runtime.sessions() as session:
            dispatches = {m: session.scalar(select(func.count()).select_from(OutboxMessage)
                                            .where(OutboxMessage.job_id == i,
                                                   OutboxMessage.kind == "dispatch"))
                          for m, i in poison.items()}
        assert stage_runs(read_ledger(ledger)) == runs
        assert max(dispatches.values()) <= settings.max_attempts, dispatches
        report("poison", poison_states=states, dispatches=dispatches,
               worker_restarts=restarts, good_jobs_ok=len(good_ids),
               baseline_3_good_s=round(baseline_s, 1),
               with_poison_3_good_plus_3_poison_s=round(poisoned_s, 1))
    finally:
        worker.stop()
        server.__exit__()


def _wait(client, ids, worker, settings, ledger, timeout):  # type: ignore[no-untyped-def]
    jobs, restarts, _ = _wait_supervised(client, ids, worker, settings, ledger, timeout)
    assert restarts == 0
    return jobs


def _wait_supervised(client, ids, worker, settings, ledger, timeout):  # type: ignore[no-untyped-def]
    """Poll the jobs; restart the worker when it dies (as compose's restart policy would)."""
    deadline = time.monotonic() + timeout
    restarts = 0
    jobs: dict[str, dict] = {}
    while time.monotonic() < deadline:
        if not worker.alive():
            restarts += 1
            worker = ChaosWorker(settings, "preprocess", ledger, name=f"r{restarts}")
            settings.data_dir.joinpath(f"worker-{restarts}.pid").write_text(
                str(worker.process.pid))
        jobs = {i: client.get(f"/v1/jobs/{i}").json() for i in ids}
        if all(preprocessed(j) for j in jobs.values()):
            break
        time.sleep(0.5)
    return jobs, restarts, worker
