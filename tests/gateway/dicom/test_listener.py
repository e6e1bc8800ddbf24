"""``lungcad dicom-listen`` as a real process, fed by dcmtk's storescu and echoscu."""

from __future__ import annotations

import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from lungcad.db.models import AuditEvent, Job, JobInput, Tenant
from lungcad.settings import Settings
from lungcad_gateway.runtime import Runtime
from tests.factories import MR_STORAGE, ct_series, ct_slice, read
from tests.gateway.dicom.conftest import AE_TITLE, CALLING, TENANT, ListenerFactory, dcmtk

WAIT_S = 120


def jobs_of(settings: Settings) -> list[dict[str, Any]]:
    runtime = Runtime(settings)
    try:
        with runtime.sessions() as session:
            rows = session.scalars(select(Job).options(selectinload(Job.inputs))
                                   .order_by(Job.created_at)).all()
            tenants = {t.id: t.name for t in session.scalars(select(Tenant))}
            return [{"id": j.id, "tenant": tenants[j.tenant_id], "study": j.study_instance_uid,
                     "state": j.state, "inputs": len(j.inputs),
                     "files": j.details.get("dicom_files")} for j in rows]
    finally:
        runtime.close()


def wait_for_jobs(settings: Settings, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_S
    while True:
        jobs = jobs_of(settings)
        if len(jobs) >= count or time.monotonic() > deadline:
            return jobs
        time.sleep(0.2)


def spooled(settings: Settings) -> list[Path]:
    return [p for p in settings.dicom_spool.rglob("*.dcm")]


def test_echo_answers_a_known_calling_ae(listeners: ListenerFactory) -> None:
    result = listeners.start().echo()
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_study_folder_becomes_one_job_of_the_senders_tenant(
        listeners: ListenerFactory, tmp_path: Path) -> None:
    files = ct_series(tmp_path / "study", n=12)
    listener = listeners.start()
    result = listener.store(tmp_path / "study")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = wait_for_jobs(listeners.settings, 1)
    assert [(j["tenant"], j["study"], j["inputs"], j["files"]) for j in jobs] == [
        (TENANT, str(read(files[0]).StudyInstanceUID), 12, 12)]
    deadline = time.monotonic() + WAIT_S
    while spooled(listeners.settings) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spooled(listeners.settings) == []


def test_a_resent_study_answers_the_job_it_already_made(
        listeners: ListenerFactory, tmp_path: Path) -> None:
    ct_series(tmp_path / "study", n=5)
    listener = listeners.start()
    assert listener.store(tmp_path / "study").returncode == 0
    first = wait_for_jobs(listeners.settings, 1)
    assert len(first) == 1
    assert listener.store(tmp_path / "study").returncode == 0
    deadline = time.monotonic() + WAIT_S  # the resend is ingested once its quiet period ends
    while spooled(listeners.settings) or not _logged(listener, "a resend"):
        assert time.monotonic() < deadline, listener.child.output()
        time.sleep(0.2)
    assert jobs_of(listeners.settings) == first


def _logged(listener: Any, text: str) -> bool:
    return text in listener.child.output()


def test_an_unknown_calling_ae_is_rejected_and_audited(listeners: ListenerFactory,
                                                        tmp_path: Path) -> None:
    listener = listeners.start()
    result = listener.echo(calling="STRANGER")
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stdout + result.stderr
    runtime = Runtime(listeners.settings)
    try:
        with runtime.sessions() as session:
            events = session.scalars(select(AuditEvent)).all()
            assert [(e.actor, e.action, e.outcome, e.address) for e in events] == [
                ("dicom STRANGER", "associate", 403, "127.0.0.1")]
    finally:
        runtime.close()
    ct_series(tmp_path / "study", n=2)
    assert listener.store(tmp_path / "study", calling="STRANGER").returncode != 0
    assert spooled(listeners.settings) == []


def test_a_non_ct_sop_class_is_refused_not_dropped(listeners: ListenerFactory,
                                                   tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    mr = ct_slice(tmp_path / "mr.dcm", 0, study, series, modality="MR", sop_class=MR_STORAGE)
    listener = listeners.start()
    result = listener.store(mr)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "no presentation context" in output.lower() or "0x0122" in output, output
    assert spooled(listeners.settings) == []
    assert listener.echo().returncode == 0  # the listener carries on


def test_two_studies_interleaved_on_one_association_become_two_jobs(
        listeners: ListenerFactory, tmp_path: Path) -> None:
    first = ct_series(tmp_path / "a", n=6)
    second = ct_series(tmp_path / "b", n=4)
    order = [f for pair in zip(first, second, strict=False) for f in pair] + first[4:]
    listener = listeners.start()
    result = listener.store(*order)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.count("Received Store Response (Success)") + \
        result.stdout.count("Received Store Response (Success)") == 10
    jobs = wait_for_jobs(listeners.settings, 2)
    assert sorted((j["study"], j["inputs"]) for j in jobs) == sorted(
        [(str(read(first[0]).StudyInstanceUID), 6), (str(read(second[0]).StudyInstanceUID), 4)])


def test_a_listener_killed_in_the_quiet_period_makes_the_job_on_restart(
        listeners: ListenerFactory, tmp_path: Path) -> None:
    ct_series(tmp_path / "study", n=8)
    listener = listeners.start(quiet_period_s=3600)  # no job can be made before the kill
    result = listener.store(tmp_path / "study")
    assert result.returncode == 0, result.stdout + result.stderr
    listener.kill()
    assert jobs_of(listeners.settings) == []
    assert len(spooled(listeners.settings)) == 8

    listeners.start(quiet_period_s=1)
    jobs = wait_for_jobs(listeners.settings, 1)
    assert [(j["inputs"], j["files"]) for j in jobs] == [(8, 8)]
    deadline = time.monotonic() + WAIT_S
    while spooled(listeners.settings) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spooled(listeners.settings) == [] and len(jobs_of(listeners.settings)) == 1


@pytest.mark.realdata
def test_a_real_study_sent_by_storescu_becomes_one_job(listeners: ListenerFactory,
                                                       shared_data: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(shared_data / "ct" / "LIDC-IDRI-0001.zip") as archive:
        names = [n for n in archive.namelist() if n.endswith(".dcm")]  # not the XML reads
        archive.extractall(tmp_path / "study", members=names)
    count = len(names)
    listener = listeners.start()
    result = listener.store(tmp_path / "study")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    jobs = wait_for_jobs(listeners.settings, 1)
    assert [(j["tenant"], j["inputs"]) for j in jobs] == [(TENANT, count)]


def test_a_listener_killed_mid_association_loses_no_acknowledged_instance(
        listeners: ListenerFactory, tmp_path: Path) -> None:
    # 80 instances of 128 KB, each fsynced before its answer: the kill lands long before the
    # last one is sent
    files = ct_series(tmp_path / "study", n=80, rows=256, cols=256)
    sop_of = {str(p): str(read(p).SOPInstanceUID) for p in files}
    listener = listeners.start(quiet_period_s=3600)
    argv = [dcmtk("storescu"), "-v", "-aet", CALLING, "-aec", AE_TITLE, "-to", "30",
            "127.0.0.1", str(listener.port), *map(str, files)]
    sender = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: S603
                              text=True)
    acknowledged, current = [], None
    assert sender.stdout is not None
    for line in sender.stdout:
        if "Sending file: " in line:
            current = line.split("Sending file: ", 1)[1].strip()
        elif "Received Store Response (Success)" in line and current is not None:
            acknowledged.append(sop_of[current])
            if len(acknowledged) == 5:
                listener.kill()  # SIGKILL while the association still sends
    sender.wait(timeout=60)
    assert sender.returncode != 0 and 5 <= len(acknowledged) < 80, acknowledged
    assert jobs_of(listeners.settings) == []

    listeners.start(quiet_period_s=1)
    [job] = wait_for_jobs(listeners.settings, 1)
    runtime = Runtime(listeners.settings)
    try:
        with runtime.sessions() as session:
            names = session.scalars(select(JobInput.original_name)
                                    .where(JobInput.job_id == job["id"])).all()
    finally:
        runtime.close()
    received = {Path(str(n)).stem for n in names}
    assert set(acknowledged) <= received, set(acknowledged) - received
    deadline = time.monotonic() + WAIT_S
    while spooled(listeners.settings) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spooled(listeners.settings) == [] and len(jobs_of(listeners.settings)) == 1
