"""Alembic environment: migrations run on a connection heal hands in (see migrate.py)."""

from __future__ import annotations

from alembic import context

from heal.store.tables import declared, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `heal db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # The full-text search objects are each database's own, made by the migrations.
    include_name=declared,
)
with context.begin_transaction():
    context.run_migrations()
