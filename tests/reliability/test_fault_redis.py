"""Redis restarted with jobs queued (a private server; the shared one is never restarted): no
job is lost and the running workers consume again within 60 s, with AOF persistence (as
compose runs Redis: the queue survives) and without it (the queue is lost: the relay notices its
sentinel is gone and dispatches every waiting job again)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import start_gateway
from tests.factories import ct_series
from tests.reliability.conftest import (
    TERMINAL,
    ChaosWorker,
    PrivateRedis,
    fault_settings,
    read_ledger,
    report,
    wait_jobs,
)


@pytest.mark.parametrize("persistence", ["aof", "none"])
def test_redis_restart_with_jobs_queued(tmp_path: Path, request: pytest.FixtureRequest,
                                        persistence: str) -> None:
    broker = PrivateRedis(tmp_path / "redis", appendonly=persistence == "aof")
    settings = fault_settings(tmp_path, request, broker_url=broker.url)
    server, gw = start_gateway(settings)
    ledger = tmp_path / "ledger.jsonl"
    # Each run sleeps 4 s before its real work: the restart below falls inside the first run's
    # sleep, so it meets the worker waiting, not acknowledging (a restart at the very moment of
    # an ack can crash the Celery worker inside kombu; compose restarts a worker that exits).
    worker = ChaosWorker(settings, "preprocess", ledger, extra_env={"LUNGCAD_CHAOS_SLOW_S": "4"})
    pid = worker.process.pid
    study = [("files", (p.name, p.read_bytes())) for p in ct_series(tmp_path / "s", n=2)]
    try:
        with gw.client() as client:
            ids = [client.post("/v1/jobs", files=study).json()["id"] for _ in range(12)]
            deadline = time.monotonic() + 120  # the relay publishes; the worker takes one
            while not any(e["event"] == "start" for e in read_ledger(ledger)):
                assert time.monotonic() < deadline, "the worker took no job"
                time.sleep(0.05)
            import redis

            queued = redis.Redis.from_url(broker.url).llen("preprocess")
            broker.stop()
            time.sleep(1)
            broker.start()
            up_at = time.time()
            jobs = wait_jobs(client, ids, lambda j: j["state"] in TERMINAL, timeout=300)
        starts = [e["t"] for e in read_ledger(ledger) if e["event"] == "start"]
        resumed_s = min((t - up_at for t in starts if t > up_at), default=None)
        states = Counter(f'{j["state"]}:{j["error_code"]}' for j in jobs.values())
        ran = [i for i, j in jobs.items() if j["error_code"] == "too_few_slices"]
        report(f"redis_restart[{persistence}]", jobs=len(ids), queued_at_restart=queued,
               finished=len(ran), lost=len(ids) - len(ran), job_states=dict(states),
               consumed_again_after_s=None if resumed_s is None else round(resumed_s, 1),
               worker_restarted=worker.process.pid != pid or not worker.alive())
        assert queued > 0
        assert len(ran) == len(ids), states
        assert resumed_s is not None and resumed_s <= 60
        assert worker.alive() and worker.process.pid == pid
    finally:
        worker.stop()
        server.__exit__()
        broker.stop()
