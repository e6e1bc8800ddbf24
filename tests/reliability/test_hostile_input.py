"""Hostile input: malformed DICOM (mutated headers, truncated pixel data, absurd lengths and
dimensions, deep sequence nesting), executable preambles, archive attacks. The API never
answers 5xx, every accepted job ends with a specific code, no worker dies, parsing memory is
bounded, nothing is written outside the upload's temporary space.

(tests/gateway/test_bad_input.py covers the basic zip bomb, ``../`` slip, symlink, nested zip
and file-count cases; these add what it does not.)"""

from __future__ import annotations

import io
import os
import random
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Gateway, start_gateway
from tests.factories import ct_series, mutate
from tests.reliability.conftest import (
    TERMINAL,
    ChaosWorker,
    fault_settings,
    read_ledger,
    report,
    wait_jobs,
)

# Resident memory bounds, about 2.5 times what the 100-upload run measured on this 2-core VM
# (2026-12-06): a parser child's peak above the worker it was forked from (measured 103 MiB;
# the 1536 MiB address-space limit is what stops a runaway parse), and the worker's own peak
# (measured 174 MiB).
PARSER_PEAK_MIB = 256
WORKER_PEAK_MIB = 448


def run_malformed(tmp_path: Path, request: pytest.FixtureRequest, count: int) -> None:
    settings = fault_settings(tmp_path, request, preprocess_memory_limit_bytes=1536 * 2**20,
                              preprocess_timeout_s=20)
    server, gw = start_gateway(settings)
    worker = ChaosWorker(settings, "preprocess", tmp_path / "ledger.jsonl")
    pid = worker.process.pid
    base = [p.read_bytes() for p in ct_series(tmp_path / "base", n=12)]
    rng = random.Random(11)
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    accepted: list[str] = []
    try:
        with gw.client() as client:
            for _ in range(count):
                files = list(base)
                for index in rng.sample(range(len(files)), rng.choice([1, 1, 3, 12])):
                    kind, files[index] = mutate(files[index], rng)
                    kinds[kind] += 1
                response = client.post("/v1/jobs", files=[
                    ("files", (f"{n:03d}.dcm", d)) for n, d in enumerate(files)])
                statuses[response.status_code] += 1
                if response.status_code == 202:
                    accepted.append(response.json()["id"])
                else:
                    codes[response.json().get("code", "?")] += 1
            started = time.monotonic()
            jobs = wait_jobs(client, accepted, lambda j: j["state"] in TERMINAL
                             or j["state"] == "inferring", timeout=max(60, count * 1.5))
        elapsed = time.monotonic() - started
        job_codes = Counter(j["error_code"] or j["state"] for j in jobs.values())
        unfinished = [i for i, j in jobs.items() if j["state"] not in TERMINAL | {"inferring"}]
        vague = [i for i, j in jobs.items() if j["state"] == "failed" and j["error_code"] in (
            None, "deadline_exceeded", "worker_lost", "transient_failure")]
        hwm = _peak_rss_mib(worker.process.pid)
        parses = [e for e in read_ledger(tmp_path / "ledger.jsonl") if e["event"] == "parse"]
        parser_peak = max((e["peak_mib"] - e["forked_mib"] for e in parses), default=None)
        report(f"malformed_dicom[{count}]", uploads=count, mutations=dict(kinds),
               api_statuses=dict(statuses), refusal_codes=dict(codes), accepted=len(accepted),
               job_outcomes=dict(job_codes), unfinished=len(unfinished), vague=len(vague),
               worker_deaths=int(not worker.alive() or worker.process.pid != pid),
               worker_peak_rss_mib=hwm, parses=len(parses), parser_peak_rss_mib=parser_peak,
               parse_memory_limit_mib=1536, drain_s=round(elapsed, 1))
        assert not any(s >= 500 for s in statuses), statuses
        assert not unfinished and not vague, (unfinished, vague)
        assert worker.alive() and worker.process.pid == pid
        assert parser_peak is not None and parser_peak <= PARSER_PEAK_MIB, parser_peak
        assert hwm is not None and hwm <= WORKER_PEAK_MIB, hwm
    finally:
        worker.stop()
        server.__exit__()


def _peak_rss_mib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def test_malformed_dicom_short(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_malformed(tmp_path, request, 100)


@pytest.mark.soak
def test_malformed_dicom_1000(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_malformed(tmp_path, request, 1000)


# -- executable preamble ----------------------------------------------------------------------

@pytest.mark.parametrize("magic", [b"MZ\x90\x00", b"\x7fELF\x02\x01", b"#!/bin/sh\n"])
def test_executable_preamble_is_refused(gateway: Gateway, tmp_path: Path, magic: bytes) -> None:
    paths = ct_series(tmp_path / "s", n=2)
    data = bytearray(paths[0].read_bytes())
    data[:len(magic)] = magic
    files = [("files", ("a.dcm", bytes(data))), ("files", ("b.dcm", paths[1].read_bytes()))]
    with gateway.client() as client:
        response = client.post("/v1/jobs", files=files)
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as zf:
            zf.writestr("a.dcm", bytes(data))
            zf.writestr("b.dcm", paths[1].read_bytes())
        in_zip = client.post("/v1/jobs", files=[("files", ("s.zip", zipped.getvalue()))])
    for answer in (response, in_zip):
        assert (answer.status_code, answer.json()["code"]) == (422, "executable_preamble")
    assert gateway.runtime.store.list_keys("jobs/") == []


# -- archive attacks --------------------------------------------------------------------------

def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


def _nested(depth: int, payload: bytes) -> bytes:
    data = payload
    for level in range(depth):
        data = _zip([(f"level{level}.zip" if level else "a.dcm", data)])
    return data


def _tree(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


def test_archive_attacks_are_refused_and_write_nothing_outside(tmp_path: Path,
                                                                 request: pytest.FixtureRequest
                                                                 ) -> None:
    settings = fault_settings(tmp_path, request, storage_backend="local", max_zip_entries=20_000)
    server, gw = start_gateway(settings)
    dcm = ct_series(tmp_path / "s", n=1)[0].read_bytes()
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as zf:
        for i in range(100_000):
            zf.writestr(f"f{i}.dcm", b"")
    cases = {
        "100k_entries": many.getvalue(),
        "absolute_windows": _zip([("C:\\Windows\\evil.dcm", dcm)]),
        "backslash_dotdot": _zip([("ct\\..\\..\\evil.dcm", dcm)]),
        "absolute_posix": _zip([("/tmp/lungcad-evil.dcm", dcm)]),
        "nested_3_deep": _nested(3, dcm),
        "bomb_in_nested": _zip([("inner.zip", _zip([("a.dcm", b"\0" * 20_000_000)]))]),
        "bomb_flat": _zip([("a.dcm", b"\0" * 60_000_000)]),
        "truncated_zip": _zip([("a.dcm", dcm)])[:-40],
    }
    outside_before = _tree(tmp_path.parent) - _tree(tmp_path)
    results: dict[str, tuple[int, str]] = {}
    peak_spool = 0
    try:
        with gw.client() as client:
            for name, payload in cases.items():
                response = client.post("/v1/jobs", files=[("files", (f"{name}.zip", payload))])
                results[name] = (response.status_code, response.json().get("code"))
                spool = settings.objects_dir / ".spool"
                peak_spool = max(peak_spool, sum(f.stat().st_size for f in spool.rglob("*")
                                                 if f.is_file()) if spool.exists() else 0)
        outside_after = _tree(tmp_path.parent) - _tree(tmp_path)
        report("archive_attacks", results=results, peak_spool_bytes=peak_spool,
               written_outside=len(outside_after - outside_before))
        assert all(400 <= status < 500 for status, _ in results.values()), results
        assert not os.path.exists("/tmp/lungcad-evil.dcm")
        assert outside_after == outside_before
        assert gw.runtime.store.list_keys("jobs/") == []
        spool = settings.objects_dir / ".spool"
        assert not spool.exists() or not any(spool.iterdir())
    finally:
        server.__exit__()
