"""Build the configured object store."""

from __future__ import annotations

from lungcad.settings import Settings, StorageBackend
from lungcad.storage.base import ObjectStore


def make_store(settings: Settings) -> ObjectStore:
    if settings.storage_backend == StorageBackend.S3:
        from lungcad.storage.s3 import S3Store

        return S3Store(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key,
                       settings.s3_bucket, secure=settings.s3_secure, region=settings.s3_region)
    from lungcad.storage.local import LocalStore

    return LocalStore(settings.objects_dir)
