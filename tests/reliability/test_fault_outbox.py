"""The gateway SIGKILLed between its database commit and the enqueue, and the relay SIGKILLed in
the middle of publishing: every accepted job still runs, once.

The job row and its dispatch outbox row are one transaction; the relay publishes a batch of rows,
then marks them published. A kill leaves rows committed but not published (a later relay
publishes them) or published but not marked (published again: the claim drops the copy). The
relay here is the real one, instrumented (``chaos_relay``: each publish recorded and slowed, so a
kill lands inside a batch); the recovering relay is the plain product. Workers run the real
stages with the shipped detector.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from lungcad.db.models import Job, OutboxKind, OutboxMessage
from lungcad.db.session import make_engine, make_sessionmaker
from tests.conftest import start_gateway
from tests.reliability.conftest import (
    TERMINAL,
    ChaosWorker,
    ChildProcess,
    GatewayProcess,
    Uploads,
    fault_settings,
    read_ledger,
    report,
    result_counts,
    stage_runs,
    submit,
    tiny_ct_zip,
    wait_jobs,
)

STAGES = ("preprocess", "inference")


def _settings(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    # A long lease: no worker dies here, so no run may be taken over by the sweeper.
    return fault_settings(tmp_path, request, lease_s=30.0)


def _workers(settings: Any, ledger: Path) -> list[ChaosWorker]:
    return [ChaosWorker(settings, stage, ledger, name=stage)
            for stage in STAGES]


def _pending(sessions: Any) -> set[tuple[str, str, int]]:
    """(job, task, attempt) of each dispatch committed but not marked published."""
    with sessions() as session:
        payloads = session.scalars(select(OutboxMessage.payload).where(
            OutboxMessage.kind == OutboxKind.DISPATCH, OutboxMessage.published_at.is_(None)))
        return {(p["job_id"], p["task"], p["attempt"]) for p in payloads}


def _sent(publishes: Path, pid: int | None = None) -> set[tuple[str, str, int]]:
    return {(e["job"], e["task"], e["attempt"]) for e in read_ledger(publishes)
            if pid is None or e["pid"] == pid}


def _ran_once(sessions: Any, client: Any, ledger: Path,
              accepted: set[str] | None = None) -> dict[str, Any]:
    """Wait for every job row to end; figures, and assert each ran each stage exactly once."""
    with sessions() as session:
        ids = list(session.scalars(select(Job.id)))
    assert set(accepted or ()) <= set(ids)  # every 202 is a row
    jobs = wait_jobs(client, ids, lambda j: j["state"] in TERMINAL, timeout=60 + 15 * len(ids))
    runs = stage_runs(read_ledger(ledger))
    per_stage = Counter(len(runs.get((i, s), [])) for i in ids for s in STAGES)
    findings, duplicate_findings = result_counts(sessions)
    states = Counter(j["state"] for j in jobs.values())
    figures = {"jobs": len(ids), "succeeded": states["succeeded"],
               "runs_per_stage": dict(per_stage),
               "findings_per_job": dict(Counter(findings[i] for i in ids)),
               "duplicate_findings": duplicate_findings}
    assert states["succeeded"] == len(ids), {i: j["error_code"] for i, j in jobs.items()}
    assert per_stage == {1: len(ids) * len(STAGES)}, per_stage
    assert all(findings[i] == 1 for i in ids) and duplicate_findings == 0
    return figures


def test_gateway_killed_between_commit_and_enqueue(tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    """The gateway (its relay in process, each publish slowed to 0.3 s) is SIGKILLed while
    uploads are in flight; a new gateway then relays what was left."""
    settings = _settings(tmp_path, request)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    ledger, publishes = tmp_path / "ledger.jsonl", tmp_path / "publishes.jsonl"
    first = GatewayProcess(settings, module="tests.reliability.chaos_relay", extra_env={
        "LUNGCAD_CHAOS_LEDGER": str(publishes), "LUNGCAD_CHAOS_PUBLISH_DELAY_S": "0.3"})
    workers = _workers(settings, ledger)
    uploads = Uploads(first.client, [("files", ("study.zip", tiny_ct_zip(seed=4)))], threads=3)
    server = None
    try:
        deadline = time.monotonic() + 60
        while len(uploads.accepted()) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(random.Random(7).uniform(0, 0.5))
        first.kill()
        uploads.stop()
        pending, sent = _pending(sessions), _sent(publishes)
        accepted = set(uploads.accepted())
        started = time.monotonic()
        server, gw = start_gateway(settings)  # prestart migration, key, relay in process
        with gw.client() as client:
            figures = _ran_once(sessions, client, ledger, accepted)
        report("gateway_killed_before_enqueue", accepted=len(accepted),
               answers=dict(Counter(a.status or a.code for a in uploads.answers)),
               committed_not_published_at_kill=len(pending - sent),
               published_not_marked_at_kill=len(pending & sent),
               recovered_in_s=round(time.monotonic() - started, 1), **figures)
        assert accepted and pending - sent, "the kill left no job unpublished"
    finally:
        uploads.stop()
        first.kill()
        for worker in workers:
            worker.stop()
        if server is not None:
            server.__exit__()
        engine.dispose()


def run_relay_kills(tmp_path: Path, request: pytest.FixtureRequest, jobs: int,
                    kills: int) -> None:
    settings = _settings(tmp_path, request)
    ledger, publishes = tmp_path / "ledger.jsonl", tmp_path / "publishes.jsonl"
    server, gw = start_gateway(settings, run_relay=False)
    workers = _workers(settings, ledger)
    rng = random.Random(11)
    delay = 0.05
    chaos_env = {"LUNGCAD_CHAOS_LEDGER": str(publishes),
                 "LUNGCAD_CHAOS_PUBLISH_DELAY_S": str(delay)}
    relays: list[ChildProcess] = []
    mid_batch = 0
    try:
        with gw.client() as client:
            payload = tiny_ct_zip(seed=6)
            for _ in range(jobs):
                assert submit(client, payload).status_code == 202
            for kill in range(kills):
                relay = ChildProcess(settings, ["tests.reliability.chaos_relay", "relay"],
                                     f"relay{kill}", chaos_env)
                relays.append(relay)
                pid = relay.process.pid
                deadline = time.monotonic() + 60
                while (not _sent(publishes, pid)
                       and time.monotonic() < deadline and _pending(gw.runtime.sessions)):
                    time.sleep(0.01)
                pending = _pending(gw.runtime.sessions)
                time.sleep(rng.uniform(0, delay * max(len(pending), 1)))
                relay.kill()
                mid_batch += bool(_sent(publishes, pid) & _pending(gw.runtime.sessions))
            relays.append(ChildProcess(settings, ["lungcad.cli", "relay"], "relay"))
            started = time.monotonic()
            figures = _ran_once(gw.runtime.sessions, client, ledger)
        sent = Counter((e["job"], e["task"], e["attempt"]) for e in read_ledger(publishes))
        twice = sum(1 for n in sent.values() if n > 1)
        report(f"relay_killed_mid_publish[{kills}]", kills=kills, kills_mid_batch=mid_batch,
               publishes_by_killed_relays=sum(sent.values()), published_twice=twice,
               recovered_in_s=round(time.monotonic() - started, 1), **figures)
        assert mid_batch >= 1 and twice >= 1
    finally:
        for process in [*relays, *workers]:
            process.stop()
        server.__exit__()


def test_relay_killed_mid_publish(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_relay_kills(tmp_path, request, jobs=6, kills=3)


@pytest.mark.soak
def test_relay_killed_mid_publish_20(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_relay_kills(tmp_path, request, jobs=30, kills=20)
