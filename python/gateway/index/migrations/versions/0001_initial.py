"""Initial index: patients, studies, series, instances, files.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

A frozen copy of the tables as first released: later revisions change them with
``op`` calls, never by importing ``gateway.index.schema``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String, nullable=False),
        sa.Column("issuer_of_patient_id", sa.String),
        sa.Column("patient_name", sa.String),
        sa.Column("patient_name_search", sa.String),
        sa.Column("birth_date", sa.String),
        sa.Column("birth_time", sa.String),
        sa.Column("sex", sa.String),
        sa.Column("other_patient_ids", sa.String),
        sa.Column("specific_character_set", sa.String),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_patients"),
        sa.UniqueConstraint("patient_id", name="uq_patients_patient_id"),
    )
    op.create_index("ix_patients_patient_name_search", "patients", ["patient_name_search"])

    op.create_table(
        "studies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_instance_uid", sa.String, nullable=False),
        sa.Column("patient_fk", sa.Integer, nullable=False),
        sa.Column("study_date", sa.String),
        sa.Column("study_time", sa.String),
        sa.Column("accession_number", sa.String),
        sa.Column("study_id", sa.String),
        sa.Column("study_description", sa.String),
        sa.Column("referring_physician_name", sa.String),
        sa.Column("referring_physician_name_search", sa.String),
        sa.Column("patient_age", sa.String),
        sa.Column("patient_size", sa.Float),
        sa.Column("patient_weight", sa.Float),
        sa.Column("specific_character_set", sa.String),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("study_instance_uid", name="uq_studies_study_instance_uid"),
        sa.ForeignKeyConstraint(["patient_fk"], ["patients.id"], name="fk_studies_patient_fk"),
    )
    op.create_index("ix_studies_patient_fk", "studies", ["patient_fk"])
    op.create_index("ix_studies_study_date", "studies", ["study_date"])
    op.create_index("ix_studies_accession_number", "studies", ["accession_number"])

    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("series_instance_uid", sa.String, nullable=False),
        sa.Column("study_fk", sa.Integer, nullable=False),
        sa.Column("modality", sa.String),
        sa.Column("series_number", sa.Integer),
        sa.Column("series_description", sa.String),
        sa.Column("series_date", sa.String),
        sa.Column("series_time", sa.String),
        sa.Column("body_part_examined", sa.String),
        sa.Column("protocol_name", sa.String),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_series"),
        sa.UniqueConstraint("series_instance_uid", name="uq_series_series_instance_uid"),
        sa.ForeignKeyConstraint(["study_fk"], ["studies.id"], name="fk_series_study_fk"),
    )
    op.create_index("ix_series_study_fk", "series", ["study_fk"])
    op.create_index("ix_series_modality", "series", ["modality"])

    op.create_table(
        "instances",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sop_instance_uid", sa.String, nullable=False),
        sa.Column("series_fk", sa.Integer, nullable=False),
        sa.Column("sop_class_uid", sa.String, nullable=False),
        sa.Column("instance_number", sa.Integer),
        sa.Column("content_date", sa.String),
        sa.Column("content_time", sa.String),
        sa.Column("number_of_frames", sa.Integer),
        sa.Column("image_type", sa.String),
        sa.Column("image_id", sa.String),
        sa.Column("rows", sa.Integer),
        sa.Column("columns", sa.Integer),
        sa.Column("specific_character_set", sa.String),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.UniqueConstraint("sop_instance_uid", name="uq_instances_sop_instance_uid"),
        sa.ForeignKeyConstraint(["series_fk"], ["series.id"], name="fk_instances_series_fk"),
    )
    op.create_index("ix_instances_series_fk", "instances", ["series_fk"])

    op.create_table(
        "files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance_fk", sa.Integer, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String, nullable=False),
        sa.Column("transfer_syntax_uid", sa.String, nullable=False),
        sa.Column("backend", sa.String, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("calling_ae", sa.String, nullable=False),
        sa.Column("called_ae", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_files"),
        sa.UniqueConstraint("instance_fk", name="uq_files_instance_fk"),
        sa.ForeignKeyConstraint(["instance_fk"], ["instances.id"], name="fk_files_instance_fk",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_files_path", "files", ["path"])


def downgrade() -> None:
    for table in ("files", "instances", "series", "studies", "patients"):
        op.drop_table(table)
