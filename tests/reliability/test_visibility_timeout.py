"""A job longer than the broker's visibility timeout: Redis hands the unacknowledged message to
a second worker, whose claim finds the first worker's live lease and drops it, so the stage
never runs twice at the same time and the job ends with one result."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import start_gateway
from tests.reliability.conftest import (
    ChaosWorker,
    fault_settings,
    overlapping,
    preprocessed,
    read_ledger,
    report,
    stage_runs,
    submit,
    tiny_ct_zip,
    wait_jobs,
)


def test_job_longer_than_visibility_timeout_runs_once(tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    settings = fault_settings(tmp_path, request, broker_visibility_timeout_s=2)
    server, gw = start_gateway(settings)
    ledger = tmp_path / "ledger.jsonl"
    slow = {"LUNGCAD_CHAOS_SLOW_S": "10"}
    workers = [ChaosWorker(settings, "preprocess", ledger, name=f"v{i}", extra_env=slow)
               for i in range(2)]
    try:
        with gw.client() as client:
            job_id = submit(client, tiny_ct_zip(seed=2)).json()["id"]
            deadline = time.monotonic() + 60
            while not stage_runs(read_ledger(ledger)) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(4)  # past the visibility timeout and past a lease length
            # What a redelivery is: the same message (task id, job, attempt) once more. kombu's
            # own restore of unacknowledged messages is not timed reliably enough for a short
            # test, so the test also publishes the copy itself.
            gw.runtime.celery.send_task(
                "lungcad.preprocess", args=[job_id, 1], queue="preprocess", exchange="",
                routing_key="preprocess", task_id=f"{job_id}.lungcad.preprocess.1", retry=False)
            job = wait_jobs(client, [job_id], preprocessed, timeout=90)[job_id]
        time.sleep(3)
        runs = stage_runs(read_ledger(ledger)).get((job_id, "preprocess"), [])
        logs = "".join(w.output() for w in workers)
        received = logs.count(f"{job_id}.lungcad.preprocess.1] received")
        dropped = logs.count("preprocess message dropped")
        report("visibility_timeout", visibility_timeout_s=2, stage_s=">10",
               deliveries=received, dropped_by_claim=dropped, runs=len(runs),
               concurrent=overlapping(runs, time.time()), state=job["state"],
               attempts=job["attempts"])
        assert job["state"] == "inferring" and job["attempts"] == 1, job
        assert len(runs) == 1 and not overlapping(runs, time.time()), runs
        assert received >= 2 and dropped >= 1, "the second copy was not delivered and dropped"
    finally:
        for worker in workers:
            worker.stop()
        server.__exit__()
