"""DICOMweb reads (QIDO-RS, WADO-RS) through the PyPI client ``dicomweb-client``, as OHIF or any
DICOMweb viewer would use them: a processed synthetic study (its original series, SR and SEG)
searched, retrieved (instances, frames, metadata, bulk data) and its SEG read back with
highdicom; per tenant, deleted jobs gone, unknown UIDs a 404 with a specific code. Runs
against both configurations."""

from __future__ import annotations

import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import SegmentationStorage
from sqlalchemy import func, select

from lungcad.db.models import DicomInstance
from lungcad_gateway.dicomweb_index import find, read_instances
from lungcad_inference.runner import InferenceOutput
from lungcad_preprocess.pipeline import Preprocessed
from tests.conftest import Gateway, make_settings, start_gateway
from tests.factories import ct_series
from tests.frontend.cases import findings_document, publish_case, upload


@pytest.fixture(scope="module")
def processed_study(tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[Path, Preprocessed, InferenceOutput]:
    """A synthetic chest CT (DICOM folder), its real preprocessing and the inference stage's
    result files (SR and SEG included) for its known nodules."""
    from lungcad.synthetic import make_chest_ct, write_dicom_series
    from lungcad_preprocess.pipeline import preprocess_path

    ct = make_chest_ct(seed=1)
    folder = tmp_path_factory.mktemp("synthetic-dicom")
    write_dicom_series(ct.hu, ct.geometry, folder)
    result = preprocess_path(folder)
    output = findings_document(result, [(n.center_lps, n.diameter_mm) for n in ct.nodules],
                               "dicomweb-test", source_folder=folder)
    assert {"sr.dcm", "seg.dcm"} <= set(output.files)
    return folder, result, output


def client(gateway: Gateway, key: str | None = None) -> DICOMwebClient:
    return DICOMwebClient(f"{gateway.url}/v1/dicomweb",
                          headers={"Authorization": f"Bearer {key or gateway.key}"})


def processed_job(gateway: Gateway, study: tuple[Path, Preprocessed, InferenceOutput]) -> str:
    folder, result, output = study
    job_id = str(upload(gateway, folder)["id"])
    publish_case(gateway, job_id, result, output)
    return job_id


def uid(dataset: dict, tag: str) -> str:
    return str(dataset[tag]["Value"][0])


def test_a_dicomweb_client_searches_retrieves_and_reads_the_seg(
        gateway: Gateway, processed_study: tuple[Path, Preprocessed, InferenceOutput]) -> None:
    folder, _, output = processed_study
    processed_job(gateway, processed_study)
    originals = {str(ds.SOPInstanceUID): (path, ds) for path in sorted(folder.iterdir())
                 if (ds := pydicom.dcmread(path))}
    first = next(iter(originals.values()))[1]
    study_uid, ct_series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    web = client(gateway)

    studies = web.search_for_studies()
    assert [uid(s, "0020000D") for s in studies] == [study_uid]
    assert set(studies[0]["00080061"]["Value"]) == {"CT", "SR", "SEG"}
    assert web.search_for_studies(search_filters={"PatientID": str(first.PatientID)})
    assert web.search_for_studies(search_filters={"PatientID": "someone-else"}) == []

    series = {uid(s, "00080060"): s for s in web.search_for_series(study_uid)}
    assert set(series) == {"CT", "SR", "SEG"}
    assert uid(series["CT"], "0020000E") == ct_series_uid
    assert series["CT"]["00201209"]["Value"] == [len(originals)]
    instances = web.search_for_instances(study_uid, ct_series_uid)
    assert {uid(i, "00080018") for i in instances} == set(originals)
    numbers = [i["00200013"]["Value"][0] for i in instances]
    assert numbers == sorted(numbers)
    assert len(web.search_for_instances(study_uid)) == len(originals) + 2

    path, original = originals[uid(instances[0], "00080018")]
    retrieved = web.retrieve_instance(study_uid, ct_series_uid, str(original.SOPInstanceUID))
    assert retrieved.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(retrieved.pixel_array, original.pixel_array)
    frames = web.retrieve_instance_frames(study_uid, ct_series_uid,
                                          str(original.SOPInstanceUID), [1])
    assert frames == [original.PixelData]
    metadata = web.retrieve_instance_metadata(study_uid, ct_series_uid,
                                              str(original.SOPInstanceUID))
    assert uid(metadata, "00280010") == str(original.Rows)
    # dicomweb-client sends "Host: 127.0.0.1" without the port, so the URI's authority is the
    # client's; its path is the server's
    bulk = urlsplit(metadata["7FE00010"]["BulkDataURI"]).path
    assert web.retrieve_bulkdata(f"{gateway.url}{bulk}") == [original.PixelData]
    assert len(web.retrieve_series_metadata(study_uid, ct_series_uid)) == len(originals)

    seg_series = uid(series["SEG"], "0020000E")
    seg_uid = uid(web.search_for_instances(study_uid, seg_series)[0], "00080018")
    seg = hd.seg.Segmentation.from_dataset(web.retrieve_instance(study_uid, seg_series, seg_uid))
    assert seg.SOPClassUID == SegmentationStorage
    assert bytes(pydicom.dcmread(pydicom.filebase.DicomBytesIO(output.files["seg.dcm"][0]))
                 .PixelData) == bytes(seg.PixelData)
    referenced = {r.SeriesInstanceUID for r in seg.ReferencedSeriesSequence}
    assert referenced == {ct_series_uid}
    assert seg.get_segment_numbers()
    assert len(web.retrieve_instance_frames(study_uid, seg_series, seg_uid, [1])) == 1
    sr = web.retrieve_series(study_uid, uid(series["SR"], "0020000E"))
    assert [ds.Modality for ds in sr] == ["SR"]
    assert len(web.retrieve_study(study_uid)) == len(originals) + 2


def test_a_study_searched_before_its_results_exist_shows_them_after(
        gateway: Gateway, processed_study: tuple[Path, Preprocessed, InferenceOutput]) -> None:
    """A viewer opening a case while it is analysed, then again once it has succeeded."""
    folder, result, output = processed_study
    job_id = str(upload(gateway, folder)["id"])
    web = client(gateway)
    study = uid(web.search_for_studies()[0], "0020000D")
    assert [uid(s, "00080060") for s in web.search_for_series(study)] == ["CT"]
    publish_case(gateway, job_id, result, output)
    assert {uid(s, "00080060") for s in web.search_for_series(study)} == {"CT", "SR", "SEG"}
    assert {ds.Modality for ds in web.retrieve_study(study)} == {"CT", "SR", "SEG"}


def test_another_tenant_unknown_uids_and_deleted_jobs_are_404(
        gateway: Gateway, tmp_path: Path) -> None:
    files = ct_series(tmp_path / "s", n=3)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in files:
            zf.write(path, f"DICOM/{path.name}")
    job_id = upload(gateway, archive)["id"]
    first = pydicom.dcmread(files[0])
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    sop = str(first.SOPInstanceUID)
    web = client(gateway)
    assert web.retrieve_instance(study, series, sop).PixelData == first.PixelData  # from the zip
    assert web.retrieve_instance_frames(study, series, sop, [1]) == [first.PixelData]

    other = gateway.new_key("hospital-b")
    assert client(gateway, other).search_for_studies() == []
    with gateway.client(key=other) as http:
        response = http.get(f"/v1/dicomweb/studies/{study}/series")
        assert (response.status_code, response.json()["code"]) == (404, "study_not_found")
    with gateway.client() as http:
        base = f"/v1/dicomweb/studies/{study}"
        cases = [(f"{base}/series/1.2.3/instances", "series_not_found"),
                 (f"{base}/series/{series}/instances/1.2.3", "instance_not_found"),
                 (f"{base}/series/{series}/instances/1.2%003/metadata", "instance_not_found"),
                 (f"{base}/series/1%00/instances/{sop}", "series_not_found"),
                 (f"{base}/series/{series}/instances/{sop}/frames/2", "frame_not_found"),
                 (f"{base}/series/{series}/instances/{sop}/bulkdata/00100010",
                  "bulkdata_not_found"),
                 ("/v1/dicomweb/studies/1.2.3/metadata", "study_not_found"),
                 ("/v1/dicomweb/studies/not-a-uid", "study_not_found")]
        for path, code in cases:
            response = http.get(path)
            assert (response.status_code, response.json()["code"]) == (404, code), path
        response = http.get(f"{base}/series/{series}/instances/{sop}/frames/x")
        assert (response.status_code, response.json()["code"]) == (422, "validation_error")
        assert http.get("/v1/dicomweb/studies", headers={"Authorization": ""}
                        ).status_code == 401
        assert http.delete(f"/v1/jobs/{job_id}").status_code == 200
        with gateway.runtime.sessions() as session:  # no patient attributes left in the index
            assert session.scalar(select(func.count()).select_from(DicomInstance).where(
                DicomInstance.job_id == job_id)) == 0
        response = http.get(f"{base}/metadata")
        assert (response.status_code, response.json()["code"]) == (404, "study_not_found")
    assert web.search_for_studies() == []


def test_a_viewer_on_an_allowed_origin_may_call_dicomweb(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """OHIF served from its own host calls the API from the browser: CORS for the origins of
    LUNGCAD_CORS_ORIGINS only, with the API key header, never cookies."""
    viewer = "https://ohif.example.org"
    server, gateway = start_gateway(make_settings("embedded", tmp_path, request,
                                                  cors_origins=[viewer]))
    try:
        with gateway.client(key=None) as http:
            preflight = http.options("/v1/dicomweb/studies", headers={
                "Origin": viewer, "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,accept"})
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == viewer
            assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
            assert "access-control-allow-credentials" not in preflight.headers
            refused = http.options("/v1/dicomweb/studies", headers={
                "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"})
            assert "access-control-allow-origin" not in refused.headers
        with gateway.client() as http:
            response = http.get("/v1/dicomweb/studies", headers={"Origin": viewer})
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == viewer
    finally:
        server.__exit__()


def test_a_repeated_zip_name_is_indexed_once_and_a_vanished_object_is_skipped(
        gateway: Gateway, tmp_path: Path) -> None:
    """A zip may repeat an entry name (the index keeps the last, as reading by name does); an
    object deleted after the index was read (its job deleted meanwhile) is left out, not a
    500."""
    files = ct_series(tmp_path / "s", n=2)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        for path in files:
            zf.write(path, "DICOM/slice.dcm")
    upload(gateway, archive)
    last = pydicom.dcmread(files[1])
    study = str(last.StudyInstanceUID)
    found = client(gateway).search_for_instances(study)
    assert [uid(i, "00080018") for i in found] == [str(last.SOPInstanceUID)]

    store = gateway.runtime.store
    with gateway.runtime.sessions() as session:
        entries = find(session, gateway.tenant_id, study)
    assert [data for _, data in read_instances(store, entries)] == [files[1].read_bytes()]
    store.delete(entries[0].object_key)
    assert list(read_instances(store, entries)) == []
