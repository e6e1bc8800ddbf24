"""SIGKILL a worker inside each real step of both stages (read, resample, store; read, detect,
store) and deliver stage messages twice: every job still ends ``succeeded`` with exactly one
result, no stage of a job ever ran twice at the same time, and the claim refused every copy,
both the copy that met a live lease (two workers racing on one message) and the copy that
arrived after the job was re-dispatched (a message of an older attempt).

The workers run the real stages with the shipped detector weights; the upload names plan the
kills and copies, which tests/reliability/chaos_worker.py carries out.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from lungcad.settings import Settings
from tests.conftest import start_gateway
from tests.reliability.conftest import (
    TERMINAL,
    ChaosWorker,
    PrivateRedis,
    fault_settings,
    overlapping,
    read_ledger,
    report,
    result_counts,
    stage_runs,
    submit,
    tiny_ct_zip,
    wait_jobs,
)

# The short test kills in the first four (an inference kill costs the most: the model loads
# again and the run repeats), the long one in all six in turn.
STEPS = [("preprocess", "read"), ("preprocess", "resample"), ("preprocess", "store"),
         ("inference", "detect"), ("inference", "read"), ("inference", "store")]


class Workers:
    """The chaos workers of each stage (plans on), the newest last."""

    def __init__(self, settings: Settings, ledger: Path) -> None:
        self.settings, self.ledger = settings, ledger
        self.by_stage: dict[str, list[ChaosWorker]] = {"preprocess": [], "inference": []}
        self.started = 0

    def start(self, stage: str) -> None:
        self.started += 1
        self.by_stage[stage].append(ChaosWorker(
            self.settings, stage, self.ledger, name=f"{stage}{self.started}",
            extra_env={"LUNGCAD_CHAOS_PLANS": "1"}))

    def wait_ready(self, timeout: float = 180) -> None:
        pids = {w.process.pid for ws in self.by_stage.values() for w in ws}
        deadline = time.monotonic() + timeout
        while not pids <= {e["pid"] for e in read_ledger(self.ledger) if e["event"] == "ready"}:
            assert time.monotonic() < deadline, "the workers did not start consuming"
            time.sleep(0.2)

    def retire_one(self, stage: str) -> None:
        self.by_stage[stage].pop(0).stop()

    def stop(self) -> None:
        for workers in self.by_stage.values():
            for worker in workers:
                worker.stop()


def race(client: httpx.Client, workers: Workers, payload: bytes, races: int) -> list[str]:
    """Two workers a stage; each run of a ``race`` job publishes a copy of its message, which
    the other worker receives while the run holds its lease. One job at a time, so the other
    worker is free."""
    for stage in list(workers.by_stage):
        workers.start(stage)
        workers.start(stage)
    workers.wait_ready()
    ids = []
    for n in range(races):
        job_id = submit(client, payload, name=f"race-{n}.zip").json()["id"]
        wait_jobs(client, [job_id], lambda j: j["state"] in TERMINAL, timeout=300)
        ids.append(job_id)
    for stage in list(workers.by_stage):
        workers.retire_one(stage)
    return ids


def kill_in_steps(client: httpx.Client, workers: Workers, payload: bytes,
                  plan: list[tuple[str, str]]) -> list[str]:
    """One worker a stage; each ``kill`` job's worker publishes a copy of its message and dies
    inside the planned step. The replacement starts only once the sweeper has re-dispatched
    the job, so the copy, queued before the new message, reaches it first and stale."""
    ids = [submit(client, payload, name=f"kill-{stage}-{step}.zip").json()["id"]
           for stage, step in plan]
    pending = set(ids)
    deadline = time.monotonic() + 120 + 40 * len(plan)
    while pending and time.monotonic() < deadline:
        for stage, line in workers.by_stage.items():
            worker = line[-1]
            if worker.alive():
                continue
            kill = next((e for e in read_ledger(workers.ledger) if e["event"] == "kill"
                         and e["worker"] == worker.process.pid), None)
            assert kill is not None, f"unplanned {stage} worker death:\n{worker.output()[-3000:]}"
            job = client.get(f"/v1/jobs/{kill['job']}").json()
            if job["attempts"] > kill["attempt"] or job["state"] in TERMINAL:
                workers.start(stage)
        for job_id in list(pending):
            if client.get(f"/v1/jobs/{job_id}").json()["state"] in TERMINAL:
                pending.discard(job_id)
        time.sleep(0.3)
    return ids


def _met(copy: dict, claims: list[dict]) -> list[dict]:
    """The claims of a copied message by a worker other than the one that copied it."""
    return [c for c in claims if c["pid"] != copy["pid"] and (c["job"], c["stage"], c[
        "attempt"]) == (copy["job"], copy["stage"], copy["attempt"])]


def run_kills(tmp_path: Path, request: pytest.FixtureRequest, kills: int, races: int) -> None:
    # A private Redis: the copies this test queues must meet no other test's workers or flushdb
    broker = PrivateRedis(tmp_path / "redis", appendonly=False)
    settings = fault_settings(tmp_path, request, max_attempts=4, broker_url=broker.url)
    server, gw = start_gateway(settings)
    ledger = tmp_path / "ledger.jsonl"
    workers = Workers(settings, ledger)
    plan = [STEPS[i % len(STEPS)] for i in range(kills)]
    payload = tiny_ct_zip(seed=3)
    started = time.monotonic()
    try:
        with gw.client() as client:
            raced = race(client, workers, payload, races)
            killed = kill_in_steps(client, workers, payload, plan)
            ids = raced + killed
            jobs = wait_jobs(client, ids, lambda j: j["state"] in TERMINAL, timeout=60)
        elapsed = time.monotonic() - started
        events = read_ledger(ledger)
        runs = stage_runs(events)
        kill_events = [e for e in events if e["event"] == "kill"]
        copies = [e for e in events if e["event"] == "copy"]
        claims = [e for e in events if e["event"] == "claim"]
        met = {(c["job"], c["stage"]): _met(c, claims) for c in copies}
        results, duplicate_findings = result_counts(gw.runtime.sessions)
        states = Counter(j["state"] for j in jobs.values())
        completed = {key: sum(1 for r in items if r["ok"]) for key, items in runs.items()}
        killed_at = {e["worker"]: e["t"] for e in kill_events}
        now = time.time()
        concurrent = [key for key, items in runs.items()
                      if overlapping(items, now, killed_at)]
        lost = [i for i in ids if jobs[i]["state"] != "succeeded"]
        duplicated = [i for i in ids if results[i] != 1]
        taken_copies = [key for key, found in met.items() if any(c["claimed"] for c in found)]
        report(f"worker_kill[{kills}]", kills=len(kill_events),
               kills_by_step=dict(Counter(f"{e['stage']}:{e['step']}" for e in kill_events)),
               jobs=len(ids), succeeded=states["succeeded"], lost=len(lost),
               duplicated=len(duplicated), concurrent_runs=len(concurrent),
               duplicate_findings=duplicate_findings, copies=len(copies),
               copies_refused_live_lease=sum(all(not c["claimed"] and c["lease_live"]
                                                 for c in met[(j, s)]) for j in raced
                                             for s in ("preprocess", "inference")),
               copies_refused_stale=sum(all(not c["claimed"] and c["job_attempts"] > c["attempt"]
                                            for c in met[(j, s)]) for j, (s, _) in
                                        zip(killed, plan, strict=True)),
               copies_taken=len(taken_copies),
               attempts=dict(Counter(j["attempts"] for j in jobs.values())),
               seconds=round(elapsed, 1))
        # every planned kill landed inside its step, once, in the job that planned it
        assert {e["job"]: (e["stage"], e["step"]) for e in kill_events} == dict(
            zip(killed, plan, strict=True)) and len(kill_events) == kills, kill_events
        assert not lost, {i: (jobs[i]["state"], jobs[i]["error_code"]) for i in lost}
        assert not duplicated and not concurrent and duplicate_findings == 0
        assert all(n <= 1 for n in completed.values()), completed  # never completed twice
        # every copy was delivered and refused: a race copy for the live lease it met, a kill
        # copy for its attempt, older than the job's
        assert set(met) == {(j, s) for j in raced for s in ("preprocess", "inference")} | {
            (j, s) for j, (s, _) in zip(killed, plan, strict=True)}, copies
        assert not taken_copies and all(met.values()), met
        assert all(c["lease_live"] for j in raced for s in ("preprocess", "inference")
                   for c in met[(j, s)]), met
        assert all(c["job_attempts"] > c["attempt"] for j, (s, _) in zip(killed, plan,
                                                                         strict=True)
                   for c in met[(j, s)]), met
    finally:
        workers.stop()
        server.__exit__()
        broker.stop()


def test_sigkill_workers_short(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_kills(tmp_path, request, kills=4, races=1)


@pytest.mark.soak
def test_sigkill_workers_20(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_kills(tmp_path, request, kills=20, races=3)
