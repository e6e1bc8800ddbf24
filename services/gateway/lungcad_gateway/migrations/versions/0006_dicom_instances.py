"""dicom_instances: the DICOM instances each job holds, for the DICOMweb read endpoints

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 03:20:00

One row per DICOM instance in a job's stored inputs (a file, or an entry of a zip) and results
(SR, SEG): its study, series and SOP UIDs, SOP class, where it is stored and its QIDO-RS
attributes. Filled by the gateway the first time a DICOMweb request needs the job.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dicom_instances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("member", sa.String(length=500), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=True),
        sa.Column("series_uid", sa.String(length=64), nullable=True),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "object_key", "member", name="uq_dicom_instances_object"),
    )
    with op.batch_alter_table("dicom_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dicom_instances_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_dicom_instances_object_key"), ["object_key"],
                              unique=False)
        batch_op.create_index("ix_dicom_instances_tenant_study", ["tenant_id", "study_uid"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dicom_instances", schema=None) as batch_op:
        batch_op.drop_index("ix_dicom_instances_tenant_study")
        batch_op.drop_index(batch_op.f("ix_dicom_instances_object_key"))
        batch_op.drop_index(batch_op.f("ix_dicom_instances_job_id"))
    op.drop_table("dicom_instances")
