"""findings feedback audit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 21:16:10.824815
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("resource", sa.String(length=300), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_tenant_time", ["tenant_id", "created_at"], unique=False)

    op.create_table(
        "finding_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("finding_id", sa.String(length=20), nullable=True),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("center_mm", sa.JSON(), nullable=True),
        sa.Column("center_voxel", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("finding_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_finding_feedback_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_finding_feedback_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("finding_id", sa.String(length=20), nullable=False),
        sa.Column("model_version", sa.String(length=40), nullable=False),
        sa.Column("center_mm", sa.JSON(), nullable=False),
        sa.Column("center_voxel", sa.JSON(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("diameter_mm", sa.Double(), nullable=False),
        sa.Column("short_axis_mm", sa.Double(), nullable=False),
        sa.Column("volume_mm3", sa.Double(), nullable=False),
        sa.Column("mean_hu", sa.Double(), nullable=False),
        sa.Column("nodule_type", sa.String(length=20), nullable=False),
        sa.Column("location", sa.JSON(), nullable=False),
        sa.Column("margin", sa.JSON(), nullable=False),
        sa.Column("nodule_probability", sa.Double(), nullable=False),
        sa.Column("malignancy_probability", sa.Double(), nullable=False),
        sa.Column("brock_probability", sa.Double(), nullable=False),
        sa.Column("lung_rads", sa.String(length=4), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "finding_id", name="uq_findings_job_finding"),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_findings_job_id"), ["job_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_findings_job_id"))

    op.drop_table("findings")
    with op.batch_alter_table("finding_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finding_feedback_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_finding_feedback_job_id"))

    op.drop_table("finding_feedback")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_tenant_time")

    op.drop_table("audit_events")
