"""The one SQLite file: async engine (aiosqlite), WAL, foreign keys, and migrations applied at start."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import QueryableAttribute

from exitd.store.errors import StoreError

T = TypeVar("T")

# SQLite binds at most 32,766 parameters in one statement: long id lists are asked in parts.
IN_CHUNK = 10_000


def in_chunks(ids: Sequence[str]) -> list[list[str]]:
    """`ids` in parts small enough for one `IN (...)` each."""
    return [list(ids[i : i + IN_CHUNK]) for i in range(0, len(ids), IN_CHUNK)]


async def select_in(
    session: AsyncSession, query: sa.Select[T], column: QueryableAttribute[str], ids: Sequence[str]
) -> list[T]:
    """The rows of `query` whose `column` is one of `ids`, asked in parts (in_chunks); each part in the
    query's order."""
    rows: list[T] = []
    for chunk in in_chunks(ids):
        rows += (await session.execute(query.where(column.in_(chunk)))).scalars()
    return rows


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a committed transaction survives power loss; we store packages before broadcasting them.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def alembic_config(db_path: Path) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("migrations")))
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{db_path}")
    return cfg


def head_revision(db_path: Path) -> str | None:
    return ScriptDirectory.from_config(alembic_config(db_path)).get_current_head()


def current_revision(db_path: Path) -> str | None:
    engine = sa.create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(db_path: Path) -> None:
    """Bring the file to the newest schema; a no-op when it is already there."""
    cfg = alembic_config(db_path)
    script = ScriptDirectory.from_config(cfg)
    try:
        current = current_revision(db_path)
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"{db_path} has schema revision {current}, unknown to this exitd: "
                "it was written by a newer version"
            )
        command.upgrade(cfg, "head")
    except sa.exc.OperationalError as e:
        hint = (
            "" if os.access(db_path.parent, os.W_OK) else " (the datadir is not writable: a read-only disk?)"
        )
        raise StoreError(f"cannot open or migrate {db_path}: {e.orig}{hint}") from None


class Store:
    """The async engine and its session factory; repositories take sessions from here."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path
        self.engine: AsyncEngine = create_async_engine(f"sqlite+aiosqlite:///{db_path}")
        event.listen(self.engine.sync_engine, "connect", _set_sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends, rolled back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
