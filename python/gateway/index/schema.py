"""The index schema: SQLAlchemy Core tables, portable to SQLite and PostgreSQL.

One row per patient (unique Patient ID, DAT-4), study, series, instance and
stored file. The columns are the Q/R keys of seed 000 tables 4-38..4-40 and seed
003 sections 4.4/5.4 (QRS-3). Derived study keys (Modalities in Study, Number of
Study Related Series/Instances) are computed at query time, never stored, so they
cannot go stale.

Types are the portable subset: String without a length (VARCHAR/TEXT: values from
the wire may exceed their VR's maximum and must still be indexed), Integer,
BigInteger, Float, DateTime (naive UTC). Changing a table needs a new revision in
``migrations/versions``; ``tests/test_index.py`` checks that the migrated
database matches this module.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Float, ForeignKey, Index, Integer,
                        MetaData, String, Table)

__all__ = ["metadata", "patients", "studies", "series", "instances", "files", "forward_jobs",
           "series_activity", "commitments", "commitment_items"]

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})

Text = String  # unbounded VARCHAR on PostgreSQL, TEXT affinity on SQLite

patients = Table(
    "patients", metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_id", Text, nullable=False, unique=True),  # DAT-4: same ID = same patient
    Column("issuer_of_patient_id", Text),
    Column("patient_name", Text),          # decoded (DAT-3), component groups joined by '='
    Column("patient_name_search", Text),   # normalize_pn(): upper case, '^'/'=' kept (QRS-3)
    Column("birth_date", Text),
    Column("birth_time", Text),
    Column("sex", Text),
    Column("other_patient_ids", Text),
    Column("specific_character_set", Text),
    # received_at of the object the demographics come from (QRS-7: latest wins)
    Column("updated_at", DateTime, nullable=False),
    # QRS-7 `patient update`: when and by whom the demographics were corrected. Once set,
    # objects received later no longer change them (docs/decisions/0010-latest-demographics.md),
    # and every object of the patient leaving the gateway carries them.
    Column("corrected_at", DateTime),
    Column("corrected_by", Text),
)
Index("ix_patients_patient_name_search", patients.c.patient_name_search)

studies = Table(
    "studies", metadata,
    Column("id", Integer, primary_key=True),
    Column("study_instance_uid", Text, nullable=False, unique=True),
    Column("patient_fk", Integer, ForeignKey("patients.id"), nullable=False, index=True),
    Column("study_date", Text, index=True),
    Column("study_time", Text),
    Column("accession_number", Text, index=True),
    Column("study_id", Text),
    Column("study_description", Text),
    Column("referring_physician_name", Text),
    Column("referring_physician_name_search", Text),
    Column("patient_age", Text),
    Column("patient_size", Float),
    Column("patient_weight", Float),
    Column("specific_character_set", Text),
    Column("updated_at", DateTime, nullable=False),
)

series = Table(
    "series", metadata,
    Column("id", Integer, primary_key=True),
    Column("series_instance_uid", Text, nullable=False, unique=True),
    Column("study_fk", Integer, ForeignKey("studies.id"), nullable=False, index=True),
    Column("modality", Text, index=True),
    Column("series_number", Integer),
    Column("series_description", Text),
    Column("series_date", Text),
    Column("series_time", Text),
    Column("body_part_examined", Text),
    Column("protocol_name", Text),
    Column("updated_at", DateTime, nullable=False),
)

instances = Table(
    "instances", metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_instance_uid", Text, nullable=False, unique=True),
    Column("series_fk", Integer, ForeignKey("series.id"), nullable=False, index=True),
    Column("sop_class_uid", Text, nullable=False),
    Column("instance_number", Integer),
    Column("content_date", Text),
    Column("content_time", Text),
    Column("number_of_frames", Integer),
    Column("image_type", Text),
    Column("image_id", Text),
    Column("rows", Integer),
    Column("columns", Integer),
    Column("specific_character_set", Text),
    Column("updated_at", DateTime, nullable=False),
)

# One row per stored object file; exactly one per instance (STO-6 replaces it).
files = Table(
    "files", metadata,
    Column("id", Integer, primary_key=True),
    Column("instance_fk", Integer, ForeignKey("instances.id", ondelete="CASCADE"),
           nullable=False, unique=True),
    Column("path", Text, nullable=False, index=True),  # relative to the backend's storage root, '/' separators
    Column("size", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("transfer_syntax_uid", Text, nullable=False),
    Column("backend", Text, nullable=False),
    Column("received_at", DateTime, nullable=False),  # naive UTC
    Column("calling_ae", Text, nullable=False),
    Column("called_ae", Text, nullable=False),
)

# ---- the durable forward queue (DESIGN §2: a transactional outbox) ---------------
#
# A job is written in the same transaction as the instance row it forwards, so
# nothing acknowledged is ever forgotten. Jobs name the instance by UID (not by
# foreign key): a job outlives an overwrite (STO-6) and reads the file current
# when it is sent. States:
#   waiting  held until its series is complete (route option)
#   held     kept for an operator (route action "hold"); `queue retry` releases it
#   pending  ready from next_attempt_at on
#   claimed  a sender holds it until lease_until (a dead sender's lease expires)
#   done     sent (Success or Warning, SND-5)
#   failed   the peer cannot take it (SND-4: SOP class not accepted); not retried
#   dead     gave up after max_attempts (dead letter); `queue retry` replays it
forward_jobs = Table(
    "forward_jobs", metadata,
    Column("id", Integer, primary_key=True),
    Column("destination", Text, nullable=False),        # a remote's name or AET@host:port
    Column("sop_instance_uid", Text, nullable=False, index=True),
    Column("sop_class_uid", Text, nullable=False),
    Column("series_instance_uid", Text, nullable=False, index=True),
    Column("study_instance_uid", Text, nullable=False),
    Column("rule", Text, nullable=False),                # the route rule (or plugin) that asked for it
    Column("priority", Integer, nullable=False),         # higher first
    Column("state", Text, nullable=False),
    Column("options", Text, nullable=False),             # JSON: per-route options (syntax preference, ...)
    Column("complete_after", Float),                     # waiting: quiet seconds; -1 = sender's association end
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),  # naive UTC
    Column("claimed_by", Text),
    Column("lease_until", DateTime),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
)
Index("ix_forward_jobs_claim", forward_jobs.c.destination, forward_jobs.c.state,
      forward_jobs.c.next_attempt_at)

# Arrival activity per series, for completeness (quiet time or association end).
series_activity = Table(
    "series_activity", metadata,
    Column("id", Integer, primary_key=True),
    Column("series_instance_uid", Text, nullable=False, unique=True),
    Column("study_instance_uid", Text, nullable=False),
    Column("last_received_at", DateTime, nullable=False),
    Column("association", Text, nullable=False),         # the last sender's association id
    Column("association_ended", Boolean, nullable=False),
    Column("completed_at", DateTime),                    # NULL while open; a late arrival reopens
    Column("instances_received", Integer, nullable=False),
)

# Storage Commitment Push Model SCU transactions (SND-8), so they survive restarts.
commitments = Table(
    "commitments", metadata,
    Column("id", Integer, primary_key=True),
    Column("transaction_uid", Text, nullable=False, unique=True),
    Column("destination", Text, nullable=False, index=True),
    # requested (N-ACTION accepted) | committed | partial (some failed) | failed | error (N-ACTION refused)
    Column("state", Text, nullable=False),
    Column("action_status", Integer),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

commitment_items = Table(
    "commitment_items", metadata,
    Column("id", Integer, primary_key=True),
    Column("commitment_fk", Integer, ForeignKey("commitments.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("sop_instance_uid", Text, nullable=False, index=True),
    Column("sop_class_uid", Text, nullable=False),
    Column("study_instance_uid", Text, nullable=False, index=True),
    Column("state", Text, nullable=False),               # pending | committed | failed
    Column("failure_reason", Integer),                   # (0008,1197) when failed
)
