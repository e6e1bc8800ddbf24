"""S3-protocol backend through the ``minio`` client (MinIO in compose, any S3 server elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.error import S3Error

from lungcad.storage.base import (
    CHUNK,
    HashingReader,
    ObjectNotFound,
    ObjectStore,
    StorageUnavailable,
    StoredObject,
    check_key,
)

_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"}
PART_SIZE = 16 * 1024 * 1024


class S3Store(ObjectStore):
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool = False, region: str = "us-east-1", timeout_s: float = 10.0) -> None:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout_s, 3.0), read=timeout_s),
            retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504]),
            maxsize=16,
        )
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                            secure=secure, region=region, http_client=http)
        self.bucket = bucket

    def ensure_bucket(self) -> None:
        try:
            if not self.client.bucket_exists(bucket_name=self.bucket):
                self.client.make_bucket(bucket_name=self.bucket)
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(f"S3 bucket {self.bucket!r} unavailable: {exc}") from exc

    def put_stream(self, key: str, stream: BinaryIO, content_type: str = "application/octet-stream",
                   size: int | None = None) -> StoredObject:
        reader = HashingReader(stream)
        try:
            self.client.put_object(
                bucket_name=self.bucket, object_name=check_key(key), data=reader,
                length=size if size is not None else -1, part_size=PART_SIZE,
                content_type=content_type,
            )
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(f"S3 write of {key} failed: {exc}") from exc
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def iter_chunks(self, key: str, chunk_size: int = CHUNK, offset: int = 0,
                    length: int = 0) -> Iterator[bytes]:
        """``offset`` and ``length`` (0: to the end) ask S3 for a byte range only."""
        try:
            response = self.client.get_object(bucket_name=self.bucket, object_name=check_key(key),
                                              offset=offset, length=length)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise StorageUnavailable(f"S3 read of {key} failed: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(f"S3 read of {key} failed: {exc}") from exc
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            return b"".join(self.iter_chunks(key, offset=start, length=length))
        except StorageUnavailable:
            if start >= self.size(key):  # S3 answers a range past the end with 416
                return b""
            raise

    def size(self, key: str) -> int:
        try:
            return int(self.client.stat_object(bucket_name=self.bucket,
                                               object_name=check_key(key)).size or 0)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise StorageUnavailable(f"S3 stat of {key} failed: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(f"S3 stat of {key} failed: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.remove_object(bucket_name=self.bucket, object_name=check_key(key))
        except S3Error as exc:
            if exc.code not in _NOT_FOUND:
                raise StorageUnavailable(f"S3 delete of {key} failed: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(f"S3 delete of {key} failed: {exc}") from exc

    def list_keys(self, prefix: str) -> list[str]:
        try:
            return sorted(o.object_name for o in self.client.list_objects(
                bucket_name=self.bucket, prefix=prefix, recursive=True) if o.object_name)
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(f"S3 list of {prefix} failed: {exc}") from exc

    def ping(self) -> None:
        try:
            if not self.client.bucket_exists(bucket_name=self.bucket):
                raise StorageUnavailable(f"S3 bucket {self.bucket!r} does not exist")
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(f"S3 unavailable: {exc}") from exc
