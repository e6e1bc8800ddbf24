"""The viewer's original-series mode through the API: the job's analysed DICOM series in
InstanceNumber order, its pixels (HU) in one answer, kept after the first decoding.

The synthetic study is written numbered from the head down (tests/frontend/conftest.py), so
InstanceNumber order is the reverse of the slice order along the normal: a stack returned in
slice order fails here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from sqlalchemy import select

from lungcad.db.models import Artifact, AuditEvent
from lungcad_preprocess.pipeline import Preprocessed
from tests.conftest import Gateway
from tests.factories import nifti
from tests.frontend.cases import publish_case, upload
from tests.frontend.conftest import Case
from tests.frontend.test_viewer_api import inflate_npy


def read_folder(folder: Path) -> list[pydicom.Dataset]:
    """The study's files, read straight with pydicom, in InstanceNumber order."""
    datasets = [pydicom.dcmread(p) for p in sorted(folder.rglob("*")) if p.is_file()]
    return sorted(datasets, key=lambda ds: int(ds.InstanceNumber))


def hu_of(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept)


def test_original_series_is_the_dicom_series_in_instance_order(gateway: Gateway,
                                                               synthetic_case: Case) -> None:
    job = synthetic_case.job_id
    files = read_folder(synthetic_case.folder)
    with gateway.client() as client:
        case = client.get(f"/v1/jobs/{job}/viewer").json()
        meta = client.get(case["original"]["url"])
        pixels = client.get(meta.json()["pixels_url"])
    assert case["original"] == {
        "url": f"/v1/jobs/{job}/viewer/original",
        "pixels_url": f"/v1/jobs/{job}/viewer/original/pixels",
        "outlines_url": f"/v1/jobs/{job}/viewer/original/outlines",
        "series_instance_uid": str(files[0].SeriesInstanceUID), "images": len(files)}
    assert meta.status_code == 200, meta.text
    body = meta.json()
    first = files[0]
    assert (body["rows"], body["columns"]) == (int(first.Rows), int(first.Columns))
    assert np.allclose(body["pixel_spacing"], [float(v) for v in first.PixelSpacing])
    assert np.allclose(body["image_orientation_patient"],
                       [float(v) for v in first.ImageOrientationPatient])
    numbers = [i["instance_number"] for i in body["images"]]
    assert numbers == sorted(numbers) and numbers == [int(ds.InstanceNumber) for ds in files]
    assert [i["sop_instance_uid"] for i in body["images"]] == [str(ds.SOPInstanceUID)
                                                               for ds in files]
    for image, ds in zip(body["images"], files, strict=True):
        assert np.allclose(image["image_position_patient"],
                           [float(v) for v in ds.ImagePositionPatient], atol=1e-4)

    assert pixels.status_code == 200, pixels.text
    assert pixels.headers["x-lungcad-encoding"] == "deflate-raw"
    assert pixels.headers["cache-control"] == "private, no-store"
    stack = inflate_npy(pixels.content)
    assert stack.dtype == np.int16 and stack.shape == (len(files), body["rows"], body["columns"])
    expected = np.stack([hu_of(ds) for ds in files])
    assert np.array_equal(stack, np.rint(expected).astype(np.int16))
    # slice order along the normal is the reverse here: the stack is not in that order
    assert not np.array_equal(stack, stack[::-1])


def test_original_series_is_decoded_once(gateway: Gateway, synthetic_case: Case,
                                         monkeypatch: Any) -> None:
    from lungcad_gateway import original_series

    job = synthetic_case.job_id
    with gateway.client() as client:
        first = client.get(f"/v1/jobs/{job}/viewer/original/pixels")
        assert first.status_code == 200

        def no_decoding(*args: object, **kwargs: object) -> None:
            raise AssertionError("decoded the DICOM series again")

        monkeypatch.setattr(original_series, "build_stack", no_decoding)
        monkeypatch.setattr(original_series, "read_series", no_decoding)
        again = client.get(f"/v1/jobs/{job}/viewer/original/pixels")
        meta = client.get(f"/v1/jobs/{job}/viewer/original")
    assert again.status_code == 200 and again.content == first.content
    assert meta.status_code == 200
    with gateway.runtime.sessions() as session:
        names = set(session.scalars(select(Artifact.name).where(
            Artifact.job_id == job, Artifact.public.is_(False))))
        reads = session.scalars(select(AuditEvent.resource).where(
            AuditEvent.action == "read",
            AuditEvent.resource == f"jobs/{job}/viewer/original")).all()
    assert {"original_series", "original_series.json"} <= names
    assert len(reads) == 2  # each pixel answer is audited like /viewer/volume
    with gateway.client() as client:  # internal: not listed with the job's result files
        listed = client.get(f"/v1/jobs/{job}/artifacts").json()["data"]
    assert not any(a["name"].startswith("original_series") for a in listed)


def test_original_series_is_per_tenant(gateway: Gateway, synthetic_case: Case) -> None:
    other = gateway.new_key("hospital-b")
    with gateway.client(key=other) as client:
        for path in ("viewer/original", "viewer/original/pixels"):
            response = client.get(f"/v1/jobs/{synthetic_case.job_id}/{path}")
            assert response.status_code == 404, path
            assert response.json()["code"] == "job_not_found"


def test_a_volume_upload_has_no_original_series(gateway: Gateway, tmp_path: Path,
                                                synthetic_study: tuple[Path, Preprocessed]
                                                ) -> None:
    job = upload(gateway, nifti(tmp_path / "ct.nii.gz", gz=True))
    _, result = synthetic_study
    volume_only = copy.copy(result)
    volume_only.meta = {**result.meta, "source": {"format": "nii.gz", "slices": None,
                                                  "notes": {},
                                                  "geometry": result.meta["source"].get(
                                                      "geometry")}}
    publish_case(gateway, job["id"], volume_only, None)
    with gateway.client() as client:
        case = client.get(f"/v1/jobs/{job['id']}/viewer")
        responses = [client.get(f"/v1/jobs/{job['id']}/viewer/original{tail}")
                     for tail in ("", "/pixels")]
    assert case.status_code == 200 and case.json()["original"] is None
    for response in responses:
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "original_series_not_found"


def test_some_images_are_those_dicom_images_in_either_layout(gateway: Gateway,
                                                             synthetic_case: Case) -> None:
    job = synthetic_case.job_id
    files = read_folder(synthetic_case.folder)
    expected = np.rint(np.stack([hu_of(ds) for ds in files])).astype(np.int16)
    n = len(files)
    url = f"/v1/jobs/{job}/viewer/original/pixels"
    with gateway.client() as client:
        whole = client.get(url)
        middle = client.get(url, params={"start": n // 2, "count": 1})
        chunk = client.get(url, params={"start": 2, "count": 5})
        tail = client.get(url, params={"start": n - 3, "count": 10})  # cut at the last image
        planes = client.get(url, params={"start": 4, "count": 3, "layout": "planes"})
        past = client.get(url, params={"start": n})
        bad = client.get(url, params={"count": 0})
    assert np.array_equal(inflate_npy(whole.content), expected)  # unchanged without parameters
    assert "x-lungcad-images" not in whole.headers
    for response, first, count in [(middle, n // 2, 1), (chunk, 2, 5), (tail, n - 3, 3)]:
        assert response.status_code == 200, response.text
        assert response.headers["x-lungcad-images"] == f"{first} {count}"
        assert response.headers["x-lungcad-layout"] == "c"
        assert response.headers["cache-control"] == "private, no-store"
        assert np.array_equal(inflate_npy(response.content), expected[first:first + count])
    assert planes.headers["x-lungcad-layout"] == "planes"
    raw = inflate_npy(planes.content).view(np.uint8).reshape(3, 2, -1).astype(np.uint16)
    joined = (raw[:, 0] | (raw[:, 1] << 8)).view(np.int16).reshape(expected[4:7].shape)
    assert np.array_equal(joined, expected[4:7])
    assert past.status_code == 416 and past.json()["code"] == "images_out_of_range"
    assert bad.status_code == 422
