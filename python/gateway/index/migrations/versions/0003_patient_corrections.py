"""Corrected patient demographics (QRS-7, `patient update`).

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("patients", sa.Column("corrected_at", sa.DateTime))
    op.add_column("patients", sa.Column("corrected_by", sa.String))


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("corrected_by")
        batch.drop_column("corrected_at")
