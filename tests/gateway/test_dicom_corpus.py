"""pydicom's own test files, uploaded one by one: each gets a 202 or a 4xx with a code from the
README's error table and a sentence that is true for that file (checked against pydicom's
reading of it). And deflated explicit VR series, synthetic and real, are accepted."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID

from lungcad.db.models import Job
from lungcad.ingest.dicom_header import CT_SOP_CLASSES
from tests.conftest import ROOT, Gateway
from tests.factories import ct_series, deflated

CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
PYTHON_WORDS = re.compile(r"Traceback|recursion|\bNone\b|[A-Z][a-z]+(Error|Exception)\b|"
                          r"object has no attribute|unpack requires")
PIXEL_BYTES = re.compile(r"has (\d+) bytes(?: of pixel data)?, needs (\d+)")


def readme_codes(status: int) -> set[str]:
    """The codes the README's error table lists for ``status``."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith(f"| {status} |"):
            return set(re.findall(r"`([a-z_]+)`", line))
    raise AssertionError(f"no {status} row in the README's error table")


def upload(client: httpx.Client, name: str, data: bytes) -> httpx.Response:
    """POST one file; a 429 is honoured by waiting its Retry-After and sending it again."""
    for _ in range(30):
        response = client.post("/v1/jobs", files=[("files", (name, data))])
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    raise AssertionError(f"{name}: still rate limited after 30 tries")


def pydicom_view(path: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, force=True)
    except Exception:  # noqa: BLE001 - the oracle has no answer for this file
        return None


def check_sentence(path: Path, code: str, detail: str) -> None:
    """The refusal's sentence against pydicom's own reading of the file."""
    ds = pydicom_view(path)
    sop_class = str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID") or ""
                    ) if ds is not None else ""
    if code == "not_ct":
        assert sop_class not in CT_SOP_CLASSES or "PixelData" not in ds  # type: ignore[operator]
        if sop_class:
            assert f"{UID(sop_class).name} (modality " in detail
    elif code == "no_pixel_data":
        assert ds is not None and "PixelData" not in ds
    elif (numbers := PIXEL_BYTES.search(detail)) is not None:
        have, need = int(numbers[1]), int(numbers[2])
        assert code == "truncated_file" and have < need
        assert need == get_expected_length(ds)  # type: ignore[arg-type]
        assert have == len(ds.PixelData)  # type: ignore[union-attr]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the corpus's odd files
def test_every_corpus_file_gets_a_true_answer(gateway: Gateway) -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    assert len(files) > 100
    codes = readme_codes(422) | readme_codes(400) | readme_codes(413)
    answers: Counter[str] = Counter()
    with gateway.client() as client:
        for path in files:
            response = upload(client, path.name, path.read_bytes())
            name = str(path.relative_to(CORPUS))
            if response.status_code == 202:
                ds = pydicom_view(path)
                assert ds is not None and ds.SOPClassUID in CT_SOP_CLASSES, name
                answers["accepted"] += 1
                continue
            body = response.json()
            assert 400 <= response.status_code < 500 and body["code"] in codes, (name, body)
            assert not PYTHON_WORDS.search(body["detail"]), (name, body["detail"])
            check_sentence(path, body["code"], body["detail"])
            answers[body["code"]] += 1
    assert answers["accepted"] >= 10 and answers["not_ct"] >= 50, answers
    assert answers["no_pixel_data"] >= 1 and answers["truncated_file"] >= 1, answers


def post_study(gateway: Gateway, files: list[tuple[str, bytes]]) -> Job:
    with gateway.client() as client:
        response = upload(client, files[0][0], files[0][1]) if len(files) == 1 else client.post(
            "/v1/jobs", files=[("files", f) for f in files])
    assert response.status_code == 202, response.text
    with gateway.runtime.sessions() as session:
        job = session.get(Job, response.json()["id"])
        assert job is not None
        _ = job.inputs
        return job


def stored_pixels(gateway: Gateway, job: Job) -> list[np.ndarray]:
    arrays = []
    for item in job.inputs:
        data = gateway.runtime.store.get_bytes(item.object_key)
        datasets = ([pydicom.dcmread(io.BytesIO(data))] if item.kind == "dicom" else
                    [pydicom.dcmread(io.BytesIO(zipfile.ZipFile(io.BytesIO(data)).read(n)))
                     for n in zipfile.ZipFile(io.BytesIO(data)).namelist()])
        arrays += [ds.pixel_array for ds in datasets]
    return arrays


def test_deflated_series_is_accepted(gateway: Gateway, tmp_path: Path) -> None:
    paths = ct_series(tmp_path / "s", n=3)
    originals = [p.read_bytes() for p in paths]
    job = post_study(gateway, [(p.name, deflated(d)) for p, d in zip(paths, originals,
                                                                       strict=True)])
    first = pydicom.dcmread(paths[0])
    assert job.study_instance_uid == first.StudyInstanceUID
    assert job.details["dicom_files"] == 3 and job.input_format == "dicom"
    expected = [pydicom.dcmread(io.BytesIO(d)).pixel_array for d in originals]
    for got, want in zip(stored_pixels(gateway, job), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.realdata
@pytest.mark.parametrize("mode", ["embedded"])
def test_real_study_deflated_in_a_zip_is_accepted(gateway: Gateway, shared_data: Path) -> None:
    with zipfile.ZipFile(shared_data / "ct" / "LIDC-IDRI-0001.zip") as zf:
        slices = [(i.filename, zf.read(i)) for i in zf.infolist() if not i.is_dir()]
    slices = [(name, data) for name, data in slices if data[128:132] == b"DICM"][:4]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as out:
        for name, data in slices:
            out.writestr(Path(name).name, deflated(data))
    job = post_study(gateway, [("LIDC-IDRI-0001-deflated.zip", buffer.getvalue())])
    assert job.input_format == "zip" and job.patient_id == "LIDC-IDRI-0001"
    assert job.details["modalities"] == {"CT": 4}
    for got, (_, data) in zip(stored_pixels(gateway, job), slices, strict=True):
        np.testing.assert_array_equal(got, pydicom.dcmread(io.BytesIO(data)).pixel_array)
