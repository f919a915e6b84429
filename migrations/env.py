"""Alembic environment: migrations run synchronously on the SQLite file, in a transaction each."""

import sqlalchemy as sa
from alembic import context

from exitd.store.models import Base

url = context.config.get_main_option("sqlalchemy.url")
engine = sa.create_engine(url)
try:
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        connection.commit()
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
