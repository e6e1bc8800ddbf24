"""idempotency request hash; webhook secret rotation

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 02:30:00

- ``jobs.request_sha256``: the SHA-256 of the request that created the job (its parts' hashes
  and its form fields), so a reused Idempotency-Key with a different request is refused. NULL
  for jobs created before this revision (their replays are not compared).
- ``tenants.previous_webhook_secret`` and ``tenants.previous_webhook_secret_until``: after
  ``lungcad admin webhook-secret --rotate`` webhooks are signed with the old secret too until
  then.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("request_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("previous_webhook_secret", sa.String(length=128),
                                   nullable=True))
        batch.add_column(sa.Column("previous_webhook_secret_until", sa.DateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("previous_webhook_secret_until")
        batch.drop_column("previous_webhook_secret")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request_sha256")
