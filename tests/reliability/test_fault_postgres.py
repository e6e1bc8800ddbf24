"""Postgres stopped for a while under load (a private server: the shared one is never
stopped): the API answers 503 with Retry-After within 2 s, never hangs, loses no accepted job,
and is fully back within 10 s of the database's return, with no restart of anything."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import start_gateway
from tests.factories import ct_series
from tests.reliability.conftest import (
    TERMINAL,
    ChaosWorker,
    PrivatePostgres,
    fault_settings,
    report,
    wait_jobs,
)


def run_outage(tmp_path: Path, request: pytest.FixtureRequest, outage_s: float) -> None:
    pg = PrivatePostgres()
    settings = fault_settings(tmp_path, request, database_url=pg.url)
    server, gw = start_gateway(settings)
    worker = ChaosWorker(settings, "preprocess", tmp_path / "ledger.jsonl")
    worker_pid = worker.process.pid
    study = [("files", (p.name, p.read_bytes())) for p in ct_series(tmp_path / "s", n=2)]
    log: list[tuple[float, str, int, float, str | None, str | None]] = []
    polled: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with gw.client() as client:
            i = 0
            while not stop.is_set():
                i += 1
                t = time.monotonic()
                # a submit, a list and a status poll (its own event-loop read on Postgres)
                kind = ("poll", "post", "get")[i % 3] if polled else "post"
                try:
                    if kind == "post":
                        r = client.post("/v1/jobs", files=study)
                    elif kind == "get":
                        r = client.get("/v1/jobs", params={"limit": 5})
                    else:
                        r = client.get(f"/v1/jobs/{polled[-1]}")
                    job_id = r.json().get("id") if r.status_code == 202 else None
                    if job_id:
                        polled.append(job_id)
                    log.append((t, kind, r.status_code,
                                time.monotonic() - t, r.headers.get("retry-after"), job_id))
                except Exception as exc:  # noqa: BLE001 - a hang or reset is a failure here
                    log.append((t, type(exc).__name__, 0, time.monotonic() - t, None, None))
                time.sleep(0.05)

    thread = threading.Thread(target=load, daemon=True)
    try:
        thread.start()
        time.sleep(3)
        down_at = time.monotonic()
        pg.stop()
        stopped_at = time.monotonic()
        time.sleep(outage_s)
        restart_at = time.monotonic()
        pg.start()
        up_at = time.monotonic()
        time.sleep(12)
        stop.set()
        thread.join(timeout=60)
        during = [e for e in log if stopped_at + 0.5 <= e[0] < restart_at]
        after = [e for e in log if e[0] >= up_at]
        first_ok = next((e[0] for e in after if e[2] in (200, 202)), None)
        recovered_s = None if first_ok is None else first_ok - up_at
        late_errors = [e for e in after if first_ok and e[0] > first_ok and e[2] >= 500]
        accepted = [e[5] for e in log if e[5]]
        with gw.client() as client:
            jobs = wait_jobs(client, accepted, lambda j: j["state"] in TERMINAL, timeout=90)
        states = Counter(f'{j["state"]}:{j["error_code"]}' for j in jobs.values())
        ran = [i for i, j in jobs.items() if j["state"] in TERMINAL
               and j["error_code"] not in ("deadline_exceeded", "worker_lost")]
        report(f"postgres_outage[{outage_s:g}s]", requests=len(log),
               during_outage=dict(Counter(f"{e[1]}:{e[2]}" for e in during)),
               max_latency_during_s=round(max((e[3] for e in during), default=0), 3),
               stop_took_s=round(stopped_at - down_at, 2),
               recovered_after_s=None if recovered_s is None else round(recovered_s, 2),
               errors_after_recovery=len(late_errors), accepted=len(accepted),
               accepted_ran=len(ran), lost=len(accepted) - len(ran), job_states=dict(states),
               worker_restarted=worker.process.pid != worker_pid or not worker.alive())
        assert during and all(e[2] == 503 and e[4] for e in during), Counter(
            (e[1], e[2]) for e in during)
        assert {"poll", "post", "get"} <= {e[1] for e in during} | {e[1] for e in after}
        assert max(e[3] for e in during) < 2.0
        assert recovered_s is not None and recovered_s <= 10 and not late_errors
        assert len(ran) == len(accepted), states
        assert worker.alive() and worker.process.pid == worker_pid
    finally:
        stop.set()
        worker.stop()
        server.__exit__()
        pg.close()


def test_postgres_outage_short(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_outage(tmp_path, request, outage_s=8)


@pytest.mark.soak
def test_postgres_outage_30s(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_outage(tmp_path, request, outage_s=30)
