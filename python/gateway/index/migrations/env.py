"""Alembic environment of the index.

``gateway.index.Index`` runs the migrations in code on open, passing its own
connection (already inside a locked transaction) as ``config.attributes["connection"]``.
For a new revision, build the same configuration in code:
``alembic.command.revision(gateway.index.alembic_config(url), "message", autogenerate=True)``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from gateway.index.schema import metadata

config = context.config


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE via copy on SQLite
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
        with engine.begin() as conn:
            _run(conn)
        engine.dispose()
