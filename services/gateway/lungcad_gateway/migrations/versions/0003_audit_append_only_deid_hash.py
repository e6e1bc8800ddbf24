"""audit events append-only; hash of the de-identified original

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 21:40:00

- ``audit_events``: a trigger refuses UPDATE, DELETE and TRUNCATE for every role (the
  application's role included; on Postgres UPDATE/DELETE/TRUNCATE are also revoked from PUBLIC).
  On SQLite the same trigger exists, but SQLite has no roles: whoever can write the database
  file can drop it (documented in docs/reliability.md).
- ``job_inputs.deid_sha256``: the SHA-256 of the stored object after the preprocess worker
  de-identified it (``LUNGCAD_DEIDENTIFY_ORIGINALS``); ``sha256`` stays the hash of the bytes as
  received.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE = "audit_events is append-only"


def upgrade() -> None:
    with op.batch_alter_table("job_inputs") as batch:
        batch.add_column(sa.Column("deid_sha256", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
            END $$""")
        op.execute("""CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE
                      ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""")
        op.execute("""CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE
                      ON audit_events FOR EACH STATEMENT
                      EXECUTE FUNCTION audit_events_append_only()""")
        op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"""CREATE TRIGGER audit_events_no_{event.lower()}
                           BEFORE {event} ON audit_events
                           BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    with op.batch_alter_table("job_inputs") as batch:
        batch.drop_column("deid_sha256")
