"""Per-process worker runtime: the Celery app the task modules register on, and lazily created
database and storage handles (one per worker process, created on first use, never at import)."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from lungcad.celery_app import create_celery
from lungcad.db.session import make_engine, make_sessionmaker
from lungcad.settings import get_settings
from lungcad.storage import ObjectStore, make_store

app = create_celery(get_settings(), include_tasks=True)


@lru_cache(maxsize=1)
def sessions() -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(get_settings()))


@lru_cache(maxsize=1)
def store() -> ObjectStore:
    return make_store(get_settings())
