"""Alembic environment: each revision runs in one transaction with its version stamp, on SQLite and on
PostgreSQL alike.

Python's sqlite3 driver commits before every DDL statement by itself, so a migration killed halfway
would leave a half-changed schema without its version stamp (a re-run then fails on "duplicate column").
The driver's own transaction handling is switched off and BEGIN emitted explicitly, as SQLAlchemy
documents for pysqlite: SQLite's DDL is transactional, so a kill at any instant leaves the file exactly at
some revision, never half of one, and the next start carries on from there.

PostgreSQL's DDL is transactional without help. Several daemons may start at once on one PostgreSQL
database (active/standby): a transaction-scoped advisory lock has them migrate one after the other, and
the later ones find the schema already at head.
"""

from typing import Any

import sqlalchemy as sa
from alembic import context

from exitd.store.db import is_postgres, run_sync, sqlite_engine
from exitd.store.models import Base

MIGRATION_LOCK = 0x657869_7464  # "exitd": the advisory lock key of migrations

url: str = context.config.attributes["url"]


def _migrate(connection: sa.Connection) -> None:
    if is_postgres(url):
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copy; batch mode does that for us
    )
    with context.begin_transaction():
        context.run_migrations()


if is_postgres(url):
    run_sync(url, _migrate)
else:
    engine = sqlite_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @sa.event.listens_for(engine, "begin")
    def _explicit_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    try:
        with engine.connect() as connection:
            _migrate(connection)
            connection.commit()
    finally:
        engine.dispose()
