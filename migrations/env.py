"""Alembic environment: each revision runs on the SQLite file in one transaction with its version stamp.

Python's sqlite3 driver commits before every DDL statement by itself, so a migration killed halfway
would leave a half-changed schema without its version stamp (a re-run then fails on "duplicate column").
The driver's own transaction handling is switched off and BEGIN emitted explicitly, as SQLAlchemy
documents for pysqlite: SQLite's DDL is transactional, so a kill at any instant leaves the file exactly at
some revision, never half of one, and the next start carries on from there.
"""

from typing import Any

import sqlalchemy as sa
from alembic import context

from exitd.store.models import Base

url = context.config.get_main_option("sqlalchemy.url")
engine = sa.create_engine(url)


@sa.event.listens_for(engine, "connect")
def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


@sa.event.listens_for(engine, "begin")
def _explicit_begin(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN")


try:
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=True,  # SQLite alters tables by copy; batch mode does that for us
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
finally:
    engine.dispose()
