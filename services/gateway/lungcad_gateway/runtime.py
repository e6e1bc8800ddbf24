"""What one gateway process holds: settings, the database, the store and a broker producer."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lungcad.celery_app import create_celery
from lungcad.db.session import make_engine, make_sessionmaker
from lungcad.settings import Settings
from lungcad.storage import ObjectStore, make_store
from lungcad_gateway.ratelimit import RateLimiter
from lungcad_gateway.status_reader import StatusReader, asyncpg_dsn


@dataclass
class Runtime:
    settings: Settings
    wake_relay: threading.Event = field(default_factory=threading.Event)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @cached_property
    def store(self) -> ObjectStore:
        return make_store(self.settings)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(self.settings)

    @cached_property
    def status_reader(self) -> StatusReader | None:
        """The poll's read on the event loop (Postgres); None on SQLite, whose reads stay on a
        worker thread."""
        dsn = asyncpg_dsn(self.settings.database_url)
        return StatusReader(self.settings, dsn) if dsn else None

    @cached_property
    def celery(self) -> Celery:
        return create_celery(self.settings)

    async def aclose(self) -> None:
        """Close what lives in the serving event loop (run there, before ``close``)."""
        if self.__dict__.get("status_reader") is not None:
            await self.status_reader.close()  # type: ignore[union-attr]
        if "rate_limiter" in self.__dict__:
            await self.rate_limiter.aclose()

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "rate_limiter" in self.__dict__:
            self.rate_limiter.close()
