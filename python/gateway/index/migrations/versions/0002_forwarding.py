"""Forward queue, series activity, storage commitment transactions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forward_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("destination", sa.String, nullable=False),
        sa.Column("sop_instance_uid", sa.String, nullable=False),
        sa.Column("sop_class_uid", sa.String, nullable=False),
        sa.Column("series_instance_uid", sa.String, nullable=False),
        sa.Column("study_instance_uid", sa.String, nullable=False),
        sa.Column("rule", sa.String, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("options", sa.String, nullable=False),
        sa.Column("complete_after", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("claimed_by", sa.String),
        sa.Column("lease_until", sa.DateTime),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.String),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime),
        sa.PrimaryKeyConstraint("id", name="pk_forward_jobs"),
    )
    op.create_index("ix_forward_jobs_sop_instance_uid", "forward_jobs", ["sop_instance_uid"])
    op.create_index("ix_forward_jobs_series_instance_uid", "forward_jobs", ["series_instance_uid"])
    op.create_index("ix_forward_jobs_claim", "forward_jobs", ["destination", "state", "next_attempt_at"])

    op.create_table(
        "series_activity",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("series_instance_uid", sa.String, nullable=False),
        sa.Column("study_instance_uid", sa.String, nullable=False),
        sa.Column("last_received_at", sa.DateTime, nullable=False),
        sa.Column("association", sa.String, nullable=False),
        sa.Column("association_ended", sa.Boolean, nullable=False),
        sa.Column("completed_at", sa.DateTime),
        sa.Column("instances_received", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_series_activity"),
        sa.UniqueConstraint("series_instance_uid", name="uq_series_activity_series_instance_uid"),
    )

    op.create_table(
        "commitments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("transaction_uid", sa.String, nullable=False),
        sa.Column("destination", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("action_status", sa.Integer),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_commitments"),
        sa.UniqueConstraint("transaction_uid", name="uq_commitments_transaction_uid"),
    )
    op.create_index("ix_commitments_destination", "commitments", ["destination"])

    op.create_table(
        "commitment_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("commitment_fk", sa.Integer, nullable=False),
        sa.Column("sop_instance_uid", sa.String, nullable=False),
        sa.Column("sop_class_uid", sa.String, nullable=False),
        sa.Column("study_instance_uid", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("failure_reason", sa.Integer),
        sa.PrimaryKeyConstraint("id", name="pk_commitment_items"),
        sa.ForeignKeyConstraint(["commitment_fk"], ["commitments.id"], ondelete="CASCADE",
                                name="fk_commitment_items_commitment_fk"),
    )
    op.create_index("ix_commitment_items_commitment_fk", "commitment_items", ["commitment_fk"])
    op.create_index("ix_commitment_items_sop_instance_uid", "commitment_items", ["sop_instance_uid"])
    op.create_index("ix_commitment_items_study_instance_uid", "commitment_items", ["study_instance_uid"])


def downgrade() -> None:
    op.drop_table("commitment_items")
    op.drop_table("commitments")
    op.drop_table("series_activity")
    op.drop_table("forward_jobs")
