"""Alembic environment: migrates the database of ``sqlalchemy.url`` to the SQLModel tables."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import String
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import reminders.data.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from reminders.data.db import make_engine
from reminders.data.models import UTCDateTime

target_metadata = SQLModel.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render the project's column types as plain SQLAlchemy types in migration scripts."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def compare_type(
    context: Any, inspected: Any, metadata_column: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    """Treat our decorators as the types they store, so autogenerate sees no false changes."""
    if isinstance(metadata_type, UTCDateTime):
        return (
            None
            if inspected_type.__class__.__name__ in ("DATETIME", "TIMESTAMP", "DateTime")
            else True
        )
    if isinstance(metadata_type, AutoString) and isinstance(inspected_type, String):
        return None
    return None


def run_migrations() -> None:
    """Run the migrations on the given connection, or on a new engine for the configured URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=compare_type,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
