"""dicom_deliveries: the C-STOREs of a succeeded job's SR and SEG to its tenant's PACS

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 02:50:00

One row per job and destination (``AE@host:port``): its state (pending, delivered,
delivery_failed), the attempts made, the last status and the history of every attempt.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dicom_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("destination", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.String(length=500), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "destination",
                            name="uq_dicom_deliveries_job_destination"),
    )
    with op.batch_alter_table("dicom_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dicom_deliveries_job_id"), ["job_id"],
                              unique=False)
        batch_op.create_index("ix_dicom_deliveries_due", ["state", "available_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dicom_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_dicom_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_dicom_deliveries_job_id"))
    op.drop_table("dicom_deliveries")
