"""The four shared TCIA studies through the whole system (API, relay, a real worker on Redis,
Postgres and the S3 server) with the shipped models: the annotated nodules and tumours are in
the findings, sized right, and the SR and SEG read back (the SR's findings linked to their SEG
segments).

Measured with the shipped detector: all four LUNA16 nodules and the QIN-LSC-0088 tumour are
found; the QIN-LSC-0014 tumour is missed (documented in docs/model_card.md), which the test
records as an expected failure so that a better model shows up as a pass."""

from __future__ import annotations

import csv
import io
import secrets
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import redis

from lungcad.settings import Settings
from tests.conftest import REDIS_TEST_URL, S3Server, WorkerProcess, start_gateway
from tests.inference.dicom_checks import assert_sr_references_seg, segments_with_frames

pytestmark = pytest.mark.realdata
LIDC = {"LIDC-IDRI-0001": "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192",
        "LIDC-IDRI-0003": "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264"}
QIN_VOLUMES_ML = {"QIN-LSC-0088": (2.0, 1.9, 2.1), "QIN-LSC-0014": (6.7, 5.9, 8.3)}
QIN_CENTROID = {"QIN-LSC-0088": (331, 151, 344.8), "QIN-LSC-0014": (307, 222, 237.0)}


def production_settings(tmp: Path, pg_server_url: str, s3_server: S3Server) -> Settings:
    """The production shape (Postgres, Redis, S3) for a module-scoped fixture."""
    from sqlalchemy import create_engine, text

    from lungcad.storage.s3 import S3Store

    engine = create_engine(pg_server_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public;"))
    engine.dispose()
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    bucket = f"real-{secrets.token_hex(4)}"
    S3Store(s3_server.endpoint, "testing", "testing-secret-key", bucket).ensure_bucket()
    return Settings(env="development", data_dir=tmp / "data", database_url=pg_server_url,
                    broker_url=REDIS_TEST_URL, storage_backend="s3",
                    s3_endpoint=s3_server.endpoint, s3_access_key="testing",
                    s3_secret_key="testing-secret-key", s3_bucket=bucket,
                    relay_interval_s=0.1, rate_limit_per_s=0)


@pytest.fixture(scope="module")
def processed(shared_data, tmp_path_factory, pg_server_url, s3_server):  # type: ignore[no-untyped-def]
    """Every shared study submitted as a zip and processed; {study: (job, findings doc)}."""
    tmp = tmp_path_factory.mktemp("real-api")
    settings = production_settings(tmp, pg_server_url, s3_server)
    server, gateway = start_gateway(settings)
    worker = WorkerProcess(settings)
    out = {}
    try:
        with gateway.client() as client:
            ids = {}
            for study in ("LIDC-IDRI-0001", "LIDC-IDRI-0003", "QIN-LSC-0088", "QIN-LSC-0014"):
                with open(shared_data / "ct" / f"{study}.zip", "rb") as handle:
                    response = client.post("/v1/jobs", files=[("files", (f"{study}.zip",
                                                                         handle))])
                assert response.status_code == 202, response.text
                ids[study] = response.json()["id"]
            deadline = time.monotonic() + 600
            for study, job_id in ids.items():
                job = client.get(f"/v1/jobs/{job_id}").json()
                while job["state"] not in ("succeeded", "failed") and time.monotonic() < deadline:
                    time.sleep(1)
                    job = client.get(f"/v1/jobs/{job_id}").json()
                assert job["state"] == "succeeded", (study, job, worker.output()[-2000:])
                doc = client.get(f"/v1/jobs/{job_id}/result").json()
                sr = client.get(f"/v1/jobs/{job_id}/artifacts/sr.dcm").content
                seg = client.get(f"/v1/jobs/{job_id}/artifacts/seg.dcm").content
                out[study] = (job, doc, sr, seg)
                print(f"{study}: {len(doc['findings'])} findings, Lung-RADS "
                      f"{doc['case']['lung_rads']['category']}, total "
                      f"{sum(v for k, v in job['timings_s'].items() if k.endswith('total')):.1f}"
                      " s of stage time")
    finally:
        worker.stop()
        server.__exit__()
    return out


def nearest(doc: dict, world: np.ndarray) -> tuple[dict, float]:
    distances = [np.linalg.norm(np.asarray(f["center_mm"]) - world) for f in doc["findings"]]
    k = int(np.argmin(distances))
    return doc["findings"][k], float(distances[k])


def test_the_luna16_nodules_are_found_and_sized(processed, shared_data) -> None:  # type: ignore[no-untyped-def]
    with open(shared_data / "annotations" / "luna16_annotations_subset.csv") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        study = next(s for s, uid in LIDC.items() if uid == row["seriesuid"])
        _, doc, _, _ = processed[study]
        world = np.array([float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])])
        reference = float(row["diameter_mm"])
        finding, distance = nearest(doc, world)
        print(f"{study} LUNA16 {reference:.1f} mm at {distance:.1f} mm -> equivalent "
              f"{finding['equivalent_diameter_mm']} mm, long axis {finding['diameter_mm']} mm")
        assert distance <= reference / 2
        assert abs(finding["equivalent_diameter_mm"] - reference) <= 3.0


def _qin(processed, study: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(in-plane distance in mm from the reference centroid, volume in mL) of the finding
    nearest the tumour, among findings within 15 mm of its height."""
    _, doc, _, _ = processed[study]
    row, col, z = QIN_CENTROID[study]
    col_mm, row_mm, _ = doc["series"]["original_spacing_mm"]
    best = (float("inf"), 0.0)
    for f in doc["findings"]:
        if abs(f["center_mm"][2] - z) >= 15:
            continue
        c, r, _ = f["center_voxel"]
        distance = float(np.hypot((c - col) * col_mm, (r - row) * row_mm))
        if distance < best[0]:
            best = (distance, f["volume_mm3"] / 1000)
    return best


@pytest.mark.xfail(strict=True, reason="found (1.4 mm from the reference centre), but the learned "
                   "outline over-segments it: 3.8 mL against the algorithms' 1.9-2.1 mL "
                   "(docs/model_card.md, known failure modes; the segmentation issue)")
def test_qin_lsc_0088_tumour_is_found_with_its_volume(processed) -> None:  # type: ignore[no-untyped-def]
    distance, volume = _qin(processed, "QIN-LSC-0088")
    volumes = QIN_VOLUMES_ML["QIN-LSC-0088"]
    print(f"QIN-LSC-0088: tumour at {distance:.1f} mm in-plane, {volume:.2f} mL "
          f"(algorithms {volumes})")
    assert distance < 10
    assert min(volumes) * 0.7 <= volume <= max(volumes) * 1.3


def test_qin_lsc_0014_tumour_is_found_with_its_volume(processed) -> None:  # type: ignore[no-untyped-def]
    distance, volume = _qin(processed, "QIN-LSC-0014")
    volumes = QIN_VOLUMES_ML["QIN-LSC-0014"]
    assert distance < 10
    assert min(volumes) * 0.7 <= volume <= max(volumes) * 1.3


def test_sr_and_seg_read_back_and_reference_the_series(processed) -> None:  # type: ignore[no-untyped-def]
    for study, (_, doc, sr_bytes, seg_bytes) in processed.items():
        sr = hd.sr.srread(io.BytesIO(sr_bytes))
        groups = sr.content.get_planar_roi_measurement_groups()
        assert len(groups) == len(doc["findings"]), study
        uids = {f["sop_instance_uid"] for f in doc["findings"]}
        for group in groups:
            ref = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
            assert ref.ReferencedSOPInstanceUID in uids
        if doc["findings"]:
            seg = hd.seg.segread(io.BytesIO(seg_bytes))
            assert seg.number_of_segments == len(doc["findings"])
            # every finding outlined in the SEG is linked to its segment, and no other
            outlined = [label.removesuffix(" nodule")
                        for label in segments_with_frames(seg_bytes).values()]
            assert outlined, study
            assert_sr_references_seg(sr_bytes, seg_bytes, outlined)
            assert pydicom.dcmread(io.BytesIO(seg_bytes)).SeriesInstanceUID != \
                doc["series"]["series_instance_uid"]


def test_brock_uses_the_header_age_and_sex_when_present(processed) -> None:  # type: ignore[no-untyped-def]
    """QIN headers carry age and sex; LIDC headers have them blank (data README)."""
    for study, (_, doc, _, _) in processed.items():
        assumptions = doc["case"]["brock_assumptions"]
        if study.startswith("QIN"):
            assert assumptions == [], study
        elif doc["findings"]:
            assert any("age" in a for a in assumptions), study

