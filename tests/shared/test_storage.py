"""Both storage backends: the local directory and an S3-protocol server (moto's)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from lungcad.storage import ObjectNotFound, ObjectStore, StorageUnavailable
from lungcad.storage.local import LocalStore
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
