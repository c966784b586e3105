"""Forward job states (see ``schema.forward_jobs``): a module of its own so the
CLI can offer them without importing SQLAlchemy."""

STATES = ("waiting", "held", "pending", "claimed", "done", "failed", "dead")
