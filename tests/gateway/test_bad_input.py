"""Every refused upload: a 4xx with a specific code, and nothing left behind (no job row, no
stored object, no spool file). Runs against both configurations."""

from __future__ import annotations

import io
import socket
import stat
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lungcad.db.models import Job, OutboxMessage
from tests.conftest import Gateway
from tests.factories import MR_STORAGE, SC_STORAGE, ct_series, metaimage, nifti


def assert_nothing_left(gateway: Gateway) -> None:
    with gateway.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert gateway.runtime.store.list_keys("jobs/") == []
    spools = [gateway.settings.objects_dir / ".spool", gateway.settings.data_dir / "spool"]
    for spool in spools:
        assert not spool.exists() or list(spool.iterdir()) == []


def post(gateway: Gateway, files: list, data: dict | None = None) -> tuple[int, dict]:
    with gateway.client() as client:
        response = client.post("/v1/jobs", files=files, data=data or {})
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["status"] == response.status_code and body["detail"]
    return response.status_code, body


def _zip_bytes(entries: dict[str, bytes], symlinks: dict[str, str] | None = None,
               method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


def test_empty_upload(gateway: Gateway) -> None:
    status, body = post(gateway, files=[("files", ("empty.dcm", b""))])
    assert (status, body["code"]) == (422, "empty_upload")
    status, body = post(gateway, files=[("patient_age", (None, "50"))])
    assert (status, body["code"]) == (422, "empty_upload")
    status, body = post(gateway, files=[], data={"patient_age": "50"})  # not multipart at all
    assert (status, body["code"]) == (415, "unsupported_media_type")
    assert_nothing_left(gateway)


def test_not_a_medical_image(gateway: Gateway) -> None:
    status, body = post(gateway, files=[("files", ("notes.txt", b"hello, not a CT" * 100))])
    assert (status, body["code"]) == (422, "not_medical_image")
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 2000
    status, body = post(gateway, files=[("files", ("photo.png", png))])
    assert (status, body["code"]) == (422, "not_medical_image")
    assert_nothing_left(gateway)


@pytest.mark.parametrize(("modality", "sop_class"), [("MR", MR_STORAGE), ("OT", SC_STORAGE),
                                                     ("CT", SC_STORAGE)])
def test_dicom_that_is_not_ct(gateway: Gateway, tmp_path: Path, modality: str,
                              sop_class: str) -> None:
    paths = ct_series(tmp_path / "s", n=2, modality=modality, sop_class=sop_class)
    status, body = post(gateway, files=[("files", (p.name, p.read_bytes())) for p in paths])
    assert (status, body["code"]) == (422, "not_ct")
    assert_nothing_left(gateway)


def test_several_unrelated_studies(gateway: Gateway, tmp_path: Path) -> None:
    paths = ct_series(tmp_path / "a", n=2) + ct_series(tmp_path / "b", n=2)
    status, body = post(gateway, files=[("files", (p.name, p.read_bytes())) for p in paths])
    assert (status, body["code"]) == (422, "multiple_studies")
    zipped = _zip_bytes({f"x/{i}.dcm": p.read_bytes() for i, p in enumerate(paths)})
    status, body = post(gateway, files=[("files", ("two.zip", zipped))])
    assert (status, body["code"]) == (422, "multiple_studies")
    assert_nothing_left(gateway)


def test_zip_bomb_by_ratio_and_by_size(gateway: Gateway) -> None:
    bomb = _zip_bytes({"a.dcm": b"\0" * (80 * 1024 * 1024)})
    assert len(bomb) < 200_000
    status, body = post(gateway, files=[("files", ("bomb.zip", bomb))])
    assert (status, body["code"]) == (422, "zip_bomb")
    assert_nothing_left(gateway)


def test_zip_bomb_over_expanded_limit(settings, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import start_gateway

    small = settings.model_copy(update={"max_zip_expanded_bytes": 1_000_000})
    server, gw = start_gateway(small)
    try:
        data = _zip_bytes({f"{i}.dcm": bytes(range(256)) * 2000 for i in range(4)},
                          method=zipfile.ZIP_STORED)
        status, body = post(gw, files=[("files", ("big.zip", data))])
        assert (status, body["code"]) == (422, "zip_bomb")
        assert_nothing_left(gw)
    finally:
        server.__exit__()


@pytest.mark.parametrize(("name", "code"), [("../../etc/evil.dcm", "zip_slip"),
                                            ("/abs/evil.dcm", "zip_slip"),
                                            ("a/../../evil.dcm", "zip_slip"),
                                            ("C:/windows/evil.dcm", "zip_slip")])
def test_zip_slip(gateway: Gateway, tmp_path: Path, name: str, code: str) -> None:
    good = ct_series(tmp_path / "s", n=1)[0].read_bytes()
    status, body = post(gateway, files=[("files", ("slip.zip", _zip_bytes({name: good})))])
    assert (status, body["code"]) == (422, code)
    assert_nothing_left(gateway)


def test_zip_symlink_and_nested_zip(gateway: Gateway, tmp_path: Path) -> None:
    good = ct_series(tmp_path / "s", n=1)[0].read_bytes()
    link = _zip_bytes({"a.dcm": good}, symlinks={"b.dcm": "/etc/passwd"})
    status, body = post(gateway, files=[("files", ("link.zip", link))])
    assert (status, body["code"]) == (422, "zip_symlink")
    nested = _zip_bytes({"inner.zip": _zip_bytes({"a.dcm": good})})
    status, body = post(gateway, files=[("files", ("nested.zip", nested))])
    assert (status, body["code"]) == (422, "nested_archive")
    assert_nothing_left(gateway)


def test_more_files_than_the_limit(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import start_gateway

    server, gw = start_gateway(settings.model_copy(update={"max_files": 3,
                                                           "max_zip_entries": 3}))
    try:
        paths = ct_series(tmp_path / "s", n=4)
        status, body = post(gw, files=[("files", (p.name, p.read_bytes())) for p in paths])
        assert (status, body["code"]) == (400, "too_many_files")
        zipped = _zip_bytes({f"{i}.dcm": p.read_bytes() for i, p in enumerate(paths)})
        status, body = post(gw, files=[("files", ("many.zip", zipped))])
        assert (status, body["code"]) == (422, "too_many_files")
        assert_nothing_left(gw)
    finally:
        server.__exit__()


def test_truncated_files(gateway: Gateway, tmp_path: Path) -> None:
    path = ct_series(tmp_path / "s", n=1)[0]
    data = path.read_bytes()
    status, body = post(gateway, files=[("files", ("cut.dcm", data[:-500]))])
    assert (status, body["code"]) == (422, "truncated_file")
    status, body = post(gateway, files=[("files", ("head.dcm", data[:300]))])
    assert (status, body["code"]) == (422, "truncated_file")
    cut_nii = nifti(tmp_path / "cut.nii", truncate=100)
    status, body = post(gateway, files=[("files", (cut_nii.name, cut_nii.read_bytes()))])
    assert (status, body["code"]) == (422, "truncated_file")
    cut_gz = nifti(tmp_path / "cut.nii.gz", gz=True)
    status, body = post(gateway, files=[("files", (cut_gz.name, cut_gz.read_bytes()[:-40]))])
    assert (status, body["code"]) == (422, "truncated_file")
    whole = _zip_bytes({"a.dcm": data})
    status, body = post(gateway, files=[("files", ("cut.zip", whole[: len(whole) // 2]))])
    assert (status, body["code"]) == (422, "invalid_zip")
    assert_nothing_left(gateway)


def test_metaimage_without_its_data(gateway: Gateway, tmp_path: Path) -> None:
    mhd, raw = metaimage(tmp_path / "m", raw_name="other.raw")
    status, body = post(gateway, files=[("files", (mhd.name, mhd.read_bytes())),
                                        ("files", (raw.name, raw.read_bytes()))])
    assert (status, body["code"]) == (422, "metaimage_missing_data")
    status, body = post(gateway, files=[("files", (mhd.name, mhd.read_bytes()))])
    assert (status, body["code"]) == (422, "metaimage_missing_data")
    assert_nothing_left(gateway)


def test_mixed_formats_and_unknown_fields(gateway: Gateway, tmp_path: Path) -> None:
    dcm = ct_series(tmp_path / "s", n=1)[0]
    nii = nifti(tmp_path / "v.nii")
    status, body = post(gateway, files=[("files", (dcm.name, dcm.read_bytes())),
                                        ("files", (nii.name, nii.read_bytes()))])
    assert (status, body["code"]) == (422, "mixed_formats")
    status, body = post(gateway, files=[("files", (dcm.name, dcm.read_bytes()))],
                        data={"patient_agee": "50"})
    assert (status, body["code"]) == (400, "unknown_field")
    status, body = post(gateway, files=[("files", (dcm.name, dcm.read_bytes()))],
                        data={"patient_age": "old"})
    assert (status, body["code"]) == (422, "invalid_field")
    # A port out of range and a host label over 63 characters cannot be checked or sent to.
    for url in ("file:///etc/passwd", "http://203.0.113.7:99999/hook",
                f"https://{'a' * 64}.example.org/hook"):
        status, body = post(gateway, files=[("files", (dcm.name, dcm.read_bytes()))],
                            data={"callback_url": url})
        assert (status, body["code"]) == (422, "invalid_field"), url
    assert_nothing_left(gateway)


def test_body_over_the_limit_is_refused_before_it_is_read(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A declared length over the cap gets 413 at once: the server answers while the client
    has sent only the headers and one small chunk of a 50 MB body."""
    from tests.conftest import start_gateway

    server, gw = start_gateway(settings.model_copy(update={"max_upload_bytes": 1_000_000}))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gw.key}\r\n"
                    "Content-Type: multipart/form-data; boundary=b\r\n"
                    f"Content-Length: {50 * 1024 * 1024}\r\n\r\n")
            sock.sendall(head.encode() + b"--b\r\n")
            reply = sock.recv(65536).decode("latin-1")
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        assert "payload_too_large" in reply
        # Chunked bodies (no declared length) are cut off once they cross the cap.
        with gw.client() as client:
            def body():  # type: ignore[no-untyped-def]
                yield (b"--b\r\nContent-Disposition: form-data; name=\"files\"; "
                       b"filename=\"a\"\r\n\r\n")
                for _ in range(40):
                    yield b"\0" * 65536
            response = client.post("/v1/jobs", content=body(),
                                   headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
        assert_nothing_left(gw)
    finally:
        server.__exit__()


def test_wrong_content_type_and_malformed_body(gateway: Gateway) -> None:
    with gateway.client() as client:
        response = client.post("/v1/jobs", content=b"{}",
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
        response = client.post("/v1/jobs", content=b"garbage without boundary",
                               headers={"Content-Type": "multipart/form-data; boundary=zz"})
        assert response.status_code in (400, 422)
        assert response.json()["code"] in ("malformed_body", "empty_upload")
    assert_nothing_left(gateway)
