"""Results back to PACS, with Orthanc as the PACS: Orthanc C-STOREs a study to the listener,
the job runs on a real worker, and the relay C-STOREs its SR and SEG back; a PACS that is down
ends ``delivery_failed`` after its retries while the job stays ``succeeded``."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from lungcad import synthetic
from lungcad.settings import Settings
from tests.conftest import Gateway, WorkerProcess, free_port, make_settings, start_gateway
from tests.gateway.dicom.conftest import AE_TITLE, ListenerFactory, Orthanc, dcmtk
from tests.gateway.dicom.test_listener import wait_for_jobs
from tests.reliability.conftest import wait_jobs
from tests.test_pipeline_e2e import needs_weights

WAIT_S = 300
TENANT = "radiology"


def delivered(job: dict[str, Any]) -> bool:
    return job["state"] in ("failed", "canceled") or (
        bool(job["deliveries"]) and all(d["state"] != "pending" for d in job["deliveries"]))


class System:
    def __init__(self, gateway: Gateway, worker: WorkerProcess) -> None:
        self.gateway, self.worker = gateway, worker
        self.key = gateway.new_key(TENANT)


@pytest.fixture()
def system_with(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start the gateway (its relay sends the results), a worker and, optionally, Orthanc."""
    started: list[Any] = []

    def start(destinations: list[str], **overrides: object) -> System:
        settings = make_settings("embedded", tmp_path, request,
                                 dicom_ae_tenants={"ORTHANC": TENANT},
                                 dicom_destinations={TENANT: destinations},
                                 dicom_delivery_backoff_base_s=0.2,
                                 dicom_delivery_poll_interval_s=0.2,
                                 dicom_delivery_timeout_s=10, **overrides)
        server, gateway = start_gateway(settings)
        started.append(server)
        worker = WorkerProcess(settings)
        started.append(worker)
        return System(gateway, worker)

    yield start
    for item in reversed(started):
        item.stop() if isinstance(item, WorkerProcess) else item.__exit__()


def synthetic_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "synthetic"
    case = synthetic.make_chest_ct(seed=5)
    synthetic.write_dicom_series(case.hu, case.geometry, folder)
    return sorted(folder.glob("*.dcm"))


@needs_weights
def test_a_pacs_that_is_down_ends_delivery_failed_and_the_job_succeeds(
        system_with: Any, tmp_path: Path) -> None:
    down = f"PACS@127.0.0.1:{free_port()}"  # nothing listens there
    system = system_with([down], dicom_delivery_max_attempts=3)
    files = [("files", (p.name, p.read_bytes())) for p in synthetic_files(tmp_path)]
    with system.gateway.client(key=system.key) as client:
        job_id = client.post("/v1/jobs", files=files).json()["id"]
        job = wait_jobs(client, [job_id], delivered, WAIT_S)[job_id]
    assert job["state"] == "succeeded", (job, system.worker.output()[-3000:])
    [delivery] = job["deliveries"]
    assert (delivery["destination"], delivery["state"], delivery["attempts"]) == (
        down, "delivery_failed", 3)
    assert "association" in delivery["last_status"]
    from lungcad.db.models import DicomDelivery

    with system.gateway.runtime.sessions() as session:
        row = session.query(DicomDelivery).filter_by(job_id=job_id).one()
        assert [(h["attempt"], h["ok"]) for h in row.history] == [(1, False), (2, False),
                                                                  (3, False)]


@pytest.mark.realdata
@needs_weights
def test_orthanc_sends_a_study_and_gets_the_sr_and_seg_back(
        system_with: Any, listeners_for: Any, shared_data: Path, tmp_path: Path) -> None:
    dcmtk("storescu")
    listener_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", {"lungcad": [AE_TITLE, "127.0.0.1", listener_port]})
    try:
        system = system_with([f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"])
        listeners = listeners_for(system.gateway.settings, listener_port)
        listeners.start()
        with zipfile.ZipFile(shared_data / "ct" / "LIDC-IDRI-0001.zip") as archive:
            names = [n for n in archive.namelist() if n.endswith(".dcm")]
            blobs = [archive.read(n) for n in names]
        with orthanc.client() as pacs:
            for blob in blobs:
                answer = pacs.post("/instances", content=blob)
                assert answer.status_code == 200, answer.text
            study_id = answer.json()["ParentStudy"]
            ct_uids = {i["MainDicomTags"]["SOPInstanceUID"]
                       for i in pacs.get(f"/studies/{study_id}/instances").json()}
            study_uid = pacs.get(f"/studies/{study_id}").json()["MainDicomTags"][
                "StudyInstanceUID"]
            sent = pacs.post("/modalities/lungcad/store", json={"Resources": [study_id],
                                                                "Synchronous": True})
            assert sent.status_code == 200, sent.text
            [job_row] = wait_for_jobs(system.gateway.settings, 1)
            with system.gateway.client(key=system.key) as client:
                job = wait_jobs(client, [job_row["id"]], delivered, WAIT_S)[job_row["id"]]
            assert job["state"] == "succeeded", (job, system.worker.output()[-3000:])
            assert job["study_instance_uid"] == study_uid and len(job["inputs"]) == len(blobs)
            assert [(d["state"], d["attempts"], d["last_status"]) for d in job["deliveries"]] \
                == [("delivered", 1, "0x0000")]
            series = pacs.get(f"/studies/{study_id}/series?expand").json()
            by_modality = {s["MainDicomTags"]["Modality"]: s for s in series}
            assert {"CT", "SR", "SEG"} <= set(by_modality), sorted(by_modality)
            results = {}
            for modality in ("SR", "SEG"):
                [instance] = by_modality[modality]["Instances"]
                data = pacs.get(f"/instances/{instance}/file").content
                results[modality] = pydicom.dcmread(io.BytesIO(data))
    finally:
        orthanc.stop()
    seg, sr = results["SEG"], results["SR"]
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == study_uid
    frames = {str(frame.DerivationImageSequence[0].SourceImageSequence[0]
                  .ReferencedSOPInstanceUID)
              for frame in seg.PerFrameFunctionalGroupsSequence}
    assert frames and frames <= ct_uids
    evidence = {str(ref.ReferencedSOPInstanceUID)
                for item in sr.CurrentRequestedProcedureEvidenceSequence
                for series_item in item.ReferencedSeriesSequence
                for ref in series_item.ReferencedSOPSequence}
    # the SR's evidence: the CT instances it was measured on and the SEG its groups reference
    assert evidence and evidence <= ct_uids | {str(seg.SOPInstanceUID)}
    assert evidence & ct_uids


@pytest.fixture()
def listeners_for() -> Iterator[Any]:
    made: list[ListenerFactory] = []

    def make(settings: Settings, port: int) -> ListenerFactory:
        factory = ListenerFactory(settings)
        factory.port = port
        made.append(factory)
        return factory

    yield make
    for factory in made:
        for listener in factory.started:
            listener.stop()
