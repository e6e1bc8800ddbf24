"""The S3 server cut off during uploads (a TCP proxy in front of the session's S3 test server is
closed and its connections reset; the store keeps its objects): every answer is 202 or 503
``storage_unavailable`` with Retry-After, nothing hangs, every job row has all its objects with
the recorded SHA-256 and size, a 503 leaves no job row, and the same gateway accepts uploads
again once the store is back."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from lungcad.db.models import Job
from lungcad.storage.s3 import S3Store
from tests.conftest import start_gateway
from tests.factories import ct_series
from tests.reliability.conftest import Uploads, fault_settings, report
from tests.reliability.tcp_proxy import TcpProxy

FILES_PER_UPLOAD = 2


def run_cut(tmp_path: Path, request: pytest.FixtureRequest, cut_s: float) -> None:
    s3 = request.getfixturevalue("s3_server")
    proxy = TcpProxy("127.0.0.1", s3.port)
    settings = fault_settings(tmp_path, request, s3_endpoint=proxy.endpoint)
    direct = S3Store(s3.endpoint, settings.s3_access_key, settings.s3_secret_key,
                     settings.s3_bucket)
    server, gw = start_gateway(settings)
    study = [("files", (p.name, p.read_bytes()))
             for p in ct_series(tmp_path / "s", n=FILES_PER_UPLOAD)]
    uploads = Uploads(gw.client, study, threads=4)
    try:
        time.sleep(3)
        cut_at = time.monotonic()
        proxy.cut()
        time.sleep(cut_s)
        proxy.restore()
        up_at = time.monotonic()
        time.sleep(5)
        uploads.stop()
        answers = uploads.answers
        # Wholly inside the cut (a request that began just before the restore may store after).
        during = [a for a in answers if cut_at + 0.5 <= a.start and a.start + a.seconds < up_at]
        # Every request begun in the cut, including one that hung past the restore.
        begun_in_cut = [a for a in answers if cut_at + 0.5 <= a.start < up_at]
        after = [a for a in answers if a.start >= up_at]
        first_ok = next((a.start for a in after if a.status == 202), None)
        late_errors = [a for a in after if first_ok is not None and a.start > first_ok
                       and a.status != 202]
        accepted = set(uploads.accepted())
        with gw.runtime.sessions() as session:
            jobs = session.scalars(select(Job).options(selectinload(Job.inputs))).all()
            inputs = {job.id: [(i.object_key, i.size, i.sha256) for i in job.inputs]
                      for job in jobs}
        bad = [(job_id, key) for job_id, rows in inputs.items() for key, size, sha in rows
               if not direct.exists(key) or direct.size(key) != size
               or direct.sha256(key) != sha]
        short = [job_id for job_id, rows in inputs.items() if len(rows) != FILES_PER_UPLOAD]
        referenced = {key for rows in inputs.values() for key, _, _ in rows}
        orphans = [key for key in direct.list_keys("jobs/") if key not in referenced]
        report(f"s3_outage[{cut_s:g}s]", requests=len(answers),
               answers=dict(Counter(a.status for a in answers)),
               during_cut=dict(Counter(f"{a.status} {a.code or ''}".strip() for a in during)),
               max_latency_during_s=round(max((a.seconds for a in begun_in_cut), default=0), 3),
               max_latency_s=round(max(a.seconds for a in answers), 3),
               connections_reset=proxy.resets,
               recovered_after_s=None if first_ok is None else round(first_ok - up_at, 2),
               errors_after_recovery=len(late_errors), job_rows=len(inputs),
               accepted=len(accepted), objects_checked=len(referenced), bad_objects=len(bad),
               rows_missing_objects=len(short), orphan_objects=len(orphans))
        assert during and all(a.status == 503 and a.code == "storage_unavailable"
                              and a.retry_after for a in during), Counter(
            (a.status, a.code) for a in during)
        assert all(a.status in (202, 503) for a in answers), Counter(
            (a.status, a.code) for a in answers)
        assert all(a.retry_after for a in answers if a.status == 503)
        assert max(a.seconds for a in begun_in_cut) < 5.0
        assert first_ok is not None and first_ok - up_at < 5 and not late_errors
        assert set(inputs) == accepted  # a 202 has its row; a 503 left none
        assert not bad and not short, (bad[:5], short[:5])
    finally:
        uploads.stop()
        server.__exit__()
        proxy.close()


def test_s3_outage_short(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_cut(tmp_path, request, cut_s=4)


@pytest.mark.soak
def test_s3_outage_30s(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_cut(tmp_path, request, cut_s=30)
