"""Alembic: upgrade from empty, downgrade/upgrade round trip, and no drift from the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from lungcad.db.models import Base
from lungcad.db.session import make_engine
from lungcad.settings import Settings
from lungcad_gateway.migrate import current, downgrade, upgrade

TABLES = {"tenants", "api_keys", "jobs", "job_inputs", "artifacts", "outbox", "webhook_attempts",
          "findings", "finding_feedback", "audit_events"}
TABLES |= {"dicom_deliveries"}  # 0005_dicom_deliveries
TABLES |= {"dicom_instances"}  # 0006_dicom_instances


def _tables(settings: Settings) -> set[str]:
    engine = make_engine(settings)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_from_empty_and_round_trip(settings: Settings) -> None:
    assert current(settings) is None
    upgrade(settings)
    assert _tables(settings) == TABLES
    head = current(settings)
    assert head is not None
    downgrade(settings, "base")
    assert _tables(settings) == set() and current(settings) is None
    upgrade(settings)
    assert _tables(settings) == TABLES and current(settings) == head


def test_migrations_match_the_models(settings: Settings) -> None:
    upgrade(settings)
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
