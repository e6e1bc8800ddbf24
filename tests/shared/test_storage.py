"""Both storage backends: the local directory and an S3-protocol server (moto's)."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from lungcad.storage import ObjectNotFound, ObjectStore, StorageUnavailable
from lungcad.storage.local import LocalStore
from lungcad.storage.ranged import open_ranged
from lungcad.storage.s3 import S3Store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "objects")
    fields = request.getfixturevalue("s3_settings_fields")
    return S3Store(str(fields["s3_endpoint"]), "testing", "testing-secret-key",
                   str(fields["s3_bucket"]))


def test_round_trip_with_checksums(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    obj = store.put_stream("jobs/a/input/00000.zip", io.BytesIO(data))  # unknown length
    assert obj.size == len(data) and obj.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes(obj.key) == data
    assert store.sha256(obj.key) == obj.sha256 and store.size(obj.key) == len(data)
    spooled = tmp_path / "part"
    spooled.write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    assert store.put_file("jobs/a/input/00001.dcm", spooled, sha256=digest).sha256 == digest
    store.put_bytes("jobs/b/x.json", b"{}")
    assert store.list_keys("jobs/a/") == ["jobs/a/input/00000.zip", "jobs/a/input/00001.dcm"]
    assert store.delete_prefix("jobs/a/") == 2
    assert store.list_keys("jobs/a/") == [] and store.exists("jobs/b/x.json")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("jobs/a/input/00000.zip")
    store.delete("jobs/a/never-existed")  # not an error
    store.ping()


@pytest.mark.parametrize("key", ["../escape", "/abs/key", "a/../../b", "a//b", "", "a b"])
def test_keys_are_validated(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put_bytes(key, b"x")


def test_unreachable_s3_raises_storage_unavailable() -> None:
    store = S3Store("127.0.0.1:1", "a", "b", "bucket", timeout_s=1)
    with pytest.raises(StorageUnavailable):
        store.ping()
    with pytest.raises(StorageUnavailable):
        store.put_bytes("jobs/x", b"data")


def test_byte_ranges_and_a_zip_read_through_them(store: ObjectStore) -> None:
    """``read_range`` reads only the bytes asked for (fewer past the end); a stored zip opens
    through :func:`open_ranged` without being downloaded whole."""
    data = bytes(range(256)) * 40
    store.put_bytes("jobs/r/blob", data)
    assert store.read_range("jobs/r/blob", 0, 10) == data[:10]
    assert store.read_range("jobs/r/blob", 5000, 300) == data[5000:5300]
    assert store.read_range("jobs/r/blob", len(data) - 4, 100) == data[-4:]
    assert store.read_range("jobs/r/blob", len(data) + 10, 5) == b""
    with pytest.raises(ObjectNotFound):
        store.read_range("jobs/r/missing", 0, 1)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(20):
            zf.writestr(f"m{n}.bin", os.urandom(50_000))
        zf.writestr("last.txt", b"the member asked for")
    store.put_bytes("jobs/r/study.zip", archive.getvalue())
    reads: list[int] = []
    original = store.read_range

    def counted(key: str, start: int, length: int) -> bytes:
        reads.append(length)
        return original(key, start, length)

    store.read_range = counted  # type: ignore[method-assign]
    with open_ranged(store, "jobs/r/study.zip", buffer_size=8192) as handle, \
            zipfile.ZipFile(handle) as zf:
        assert zf.read("last.txt") == b"the member asked for"
    assert sum(reads) < len(archive.getvalue()) / 10
