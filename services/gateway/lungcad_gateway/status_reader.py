"""The status poll's read on the event loop: one asyncpg query on Postgres, no worker thread.

The poll is the API's most frequent request. Through SQLAlchemy's sync session on a worker
thread it cost 2.8-3.4 ms of gateway CPU on a 2-core VM (pool pre-ping, BEGIN, two queries,
ROLLBACK, the thread hop and the GIL hand-offs around it), and its p99 at 200 polls/s was often
over 20 ms. Here the job, the tenant check and the inputs are one prepared statement on a small
asyncpg pool, read in autocommit (a single SELECT is its own snapshot): 1.9-2.1 ms a poll
(``bench/bench_gateway.py``, README).

Only the common case is served here: a live API key that owns the job. Anything else (no row)
returns None and the caller takes the full path, which answers 401 / 404 as every route does.
A database that cannot be reached answers 503 ``database_unavailable`` at once, like the sync
path; a pooled connection the server has closed (a restart) is replaced and the read retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url

from lungcad.db.models import ApiKey, DicomDelivery, Job, JobInput
from lungcad.errors import ServiceUnavailable
from lungcad.settings import Settings

log = logging.getLogger(__name__)
POOL_SIZE = 4
APPLICATION_NAME = "lungcad-status-poll"  # how its connections show in pg_stat_activity

_JOBS, _KEYS, _INPUTS = Job.__table__, ApiKey.__table__, JobInput.__table__
_DELIVERIES = DicomDelivery.__table__
INPUT_FIELDS = ("ordinal", "kind", "size", "sha256")  # of each input in the job document
DELIVERY_FIELDS = ("destination", "state", "attempts", "last_status")  # of each delivery


def _json_array(table: Any, fields: tuple[str, ...], order: Any, label: str) -> Any:
    """The job's rows of ``table`` as one JSON array of objects of ``fields``."""
    return (select(func.coalesce(
        func.json_agg(func.json_build_object(
            *[part for name in fields for part in (literal_column(f"'{name}'"), table.c[name])])
            .op("ORDER BY")(order)),
        literal_column("'[]'::json")))
        .where(table.c.job_id == _JOBS.c.id).scalar_subquery().label(label))


_INPUTS_JSON = _json_array(_INPUTS, INPUT_FIELDS, _INPUTS.c.ordinal, "inputs")
_DELIVERIES_JSON = _json_array(_DELIVERIES, DELIVERY_FIELDS, _DELIVERIES.c.id, "deliveries")
# The job through a live key of its tenant (also the thread path's first query)...
JOB_BY_KEY = (select(_KEYS.c.tenant_id, *[c for c in _JOBS.c if c.key != "tenant_id"])
              .join(_JOBS, _JOBS.c.tenant_id == _KEYS.c.tenant_id)
              .where(_KEYS.c.key_hash == bindparam("key_hash"), _KEYS.c.revoked_at.is_(None),
                     _JOBS.c.id == bindparam("job_id")))
# ... and here with its inputs and its PACS deliveries as JSON arrays.
STATUS_QUERY = JOB_BY_KEY.add_columns(_INPUTS_JSON, _DELIVERIES_JSON)
_COMPILED = STATUS_QUERY.compile(dialect=asyncpg_dialect.dialect())
_SQL, _PARAMS = _COMPILED.string, tuple(_COMPILED.positiontup or ())


def asyncpg_dsn(database_url: str) -> str | None:
    """The asyncpg DSN of a Postgres SQLAlchemy URL; None for any other database."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Unreachable(ServiceUnavailable):
    code = "database_unavailable"


class StatusReader:
    """A small asyncpg pool, opened on first use in the serving event loop."""

    def __init__(self, settings: Settings, dsn: str) -> None:
        self._dsn = dsn
        self._timeout = float(settings.db_connect_timeout_s)
        self._statement_timeout_ms = settings.db_statement_timeout_ms
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None

    async def _get_pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        import asyncpg

        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=0, max_size=POOL_SIZE, timeout=self._timeout,
                    command_timeout=self._statement_timeout_ms / 1000,
                    server_settings={"statement_timeout": str(self._statement_timeout_ms),
                                     "application_name": APPLICATION_NAME},
                    init=_init_connection, reset=_no_reset)
        return self._pool

    async def job_row(self, key_hash: str, job_id: str) -> dict[str, Any] | None:
        """The job's columns (plus ``tenant_id`` and ``inputs``) when ``key_hash`` is a live key
        of its tenant, else None."""
        import asyncpg

        values = {"key_hash": key_hash, "job_id": job_id}
        args = [values[name] for name in _PARAMS]
        for attempt in (1, 2):
            try:
                pool = await self._get_pool()
                # bounds the wait for a pooled connection too (connect, then the statement)
                async with asyncio.timeout(self._timeout + self._statement_timeout_ms / 1000), \
                        pool.acquire() as connection:
                    try:
                        row = await connection.fetchrow(_SQL, *args)
                    except BaseException:
                        connection.terminate()  # in an unknown state: never back to the pool
                        raise
                return None if row is None else dict(row)
            except (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError,
                    asyncpg.exceptions.InternalClientError) as exc:
                # the server closed the connection under us (a restart, a terminated backend);
                # the protocol may notice it mid-statement as an internal state error
                if attempt == 2:
                    raise _unreachable(exc) from exc
                log.info("status poll: pooled connection lost (%s); retrying", exc)
            except (OSError, TimeoutError, asyncpg.PostgresConnectionError,
                    asyncpg.exceptions.OperatorInterventionError) as exc:
                raise _unreachable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


async def _init_connection(connection: Any) -> None:
    await connection.set_type_codec("json", encoder=json.dumps, decoder=json.loads,
                                    schema="pg_catalog")


async def _no_reset(connection: Any) -> None:
    """Nothing to undo: a checkout runs one SELECT in autocommit and sets no session state.
    (asyncpg's default reset, RESET ALL / UNLISTEN / CLOSE ALL, costs a round trip a poll.)"""


def _unreachable(exc: BaseException) -> Unreachable:
    log.warning("database unavailable (status poll): %s", exc)
    return Unreachable("The database is unavailable; nothing was accepted. Retry later.")
