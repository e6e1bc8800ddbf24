"""SIGKILL a worker at a random point of a job, across both worker kinds: every job still ends
``succeeded`` with exactly one result, and no stage of a job ever ran twice at the same time.

The workers run the real stages with the shipped detector weights.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import start_gateway
from tests.reliability.conftest import (
    TERMINAL,
    ChaosWorker,
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


def _in_flight(ledger: Path, stage: str, pid: int) -> str | None:
    """The job whose ``stage`` the worker ``pid`` is running now, if any."""
    runs = stage_runs(read_ledger(ledger))
    for (job, s), items in runs.items():
        if s == stage and any(r["pid"] == pid and r["end"] is None for r in items):
            return job
    return None


def run_kills(tmp_path: Path, request: pytest.FixtureRequest, kills: int) -> None:
    settings = fault_settings(tmp_path, request, max_attempts=4)
    server, gw = start_gateway(settings)
    ledger = tmp_path / "ledger.jsonl"
    slow = {"LUNGCAD_CHAOS_SLOW_S": "1.0"}
    workers = {stage: ChaosWorker(settings, stage, ledger, name=stage, extra_env=slow)
               for stage in ("preprocess", "inference")}
    rng = random.Random(20)
    killed: list[tuple[str, str]] = []
    killed_at: dict[int, float] = {}
    payload = tiny_ct_zip(seed=3)
    started = time.monotonic()
    try:
        with gw.client() as client:
            # a few more jobs than kills: a job that ends a stage while the test is restarting
            # a worker is not killed, and each job is killed once at most
            ids = [submit(client, payload).json()["id"] for _ in range(kills + kills // 4 + 1)]
            deadline = time.monotonic() + 60 + 25 * kills
            # one kill per job, half of them in each stage: a job whose worker dies on every
            # attempt is a poison job, failed after max_attempts by design (test_poison.py)
            quota = {"preprocess": kills // 2, "inference": kills - kills // 2}
            while len(killed) < kills and time.monotonic() < deadline:
                done = {j for _, j in killed}
                running = [(s, _in_flight(ledger, s, workers[s].process.pid)) for s in quota
                           if quota[s] > 0]
                targets = [(s, j) for s, j in running if j is not None and j not in done]
                if not targets:
                    time.sleep(0.05)
                    continue
                stage, job = rng.choice(targets)
                worker = workers[stage]
                time.sleep(rng.uniform(0, 0.9))  # a random point (each stage sleeps 1 s)
                if _in_flight(ledger, stage, worker.process.pid) != job:
                    continue
                pid = worker.process.pid
                worker.kill()
                killed_at[pid] = time.time()
                killed.append((stage, job))
                quota[stage] -= 1
                workers[stage] = ChaosWorker(settings, stage, ledger, name=f"{stage}{len(killed)}",
                                             extra_env=slow)
            jobs = wait_jobs(client, ids, lambda j: j["state"] in TERMINAL,
                             timeout=120 + 10 * kills)
        elapsed = time.monotonic() - started
        runs = stage_runs(read_ledger(ledger))
        results, duplicate_findings = result_counts(gw.runtime.sessions)
        states = Counter(j["state"] for j in jobs.values())
        completed = {key: sum(1 for r in items if r["ok"]) for key, items in runs.items()}
        now = time.time()
        concurrent = [key for key, items in runs.items()
                      if overlapping(items, now, killed_at)]
        lost = [i for i in ids if jobs[i]["state"] != "succeeded"]
        duplicated = [i for i in ids if results[i] != 1]
        report(f"worker_kill[{kills}]", kills=len(killed),
               kills_by_stage=dict(Counter(s for s, _ in killed)),
               killed_jobs=len({j for _, j in killed}), jobs=len(ids),
               succeeded=states["succeeded"], lost=len(lost), duplicated=len(duplicated),
               concurrent_runs=len(concurrent), duplicate_findings=duplicate_findings,
               attempts=dict(Counter(j["attempts"] for j in jobs.values())),
               seconds=round(elapsed, 1))
        assert len(killed) == kills
        assert not lost, {i: (jobs[i]["state"], jobs[i]["error_code"]) for i in lost}
        assert not duplicated and not concurrent and duplicate_findings == 0
        assert all(n <= 1 for n in completed.values()), completed  # never completed twice
    finally:
        for worker in workers.values():
            worker.stop()
        server.__exit__()


def test_sigkill_workers_short(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_kills(tmp_path, request, kills=4)


@pytest.mark.soak
def test_sigkill_workers_20(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_kills(tmp_path, request, kills=20)
