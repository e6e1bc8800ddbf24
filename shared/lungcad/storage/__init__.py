"""Object storage: one interface, a local-directory backend and an S3 (minio client) backend."""

from lungcad.storage.base import ObjectNotFound, ObjectStore, StorageUnavailable, StoredObject
from lungcad.storage.factory import make_store

__all__ = ["ObjectNotFound", "ObjectStore", "StorageUnavailable", "StoredObject", "make_store"]
