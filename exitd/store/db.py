"""The database: one SQLite file in the datadir (aiosqlite, WAL, foreign keys) or a PostgreSQL server
(asyncpg), chosen by `database.url`; alembic migrations applied at start, the same ones on both."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.pool import NullPool

from exitd.store.errors import NotLeader, StoreError
from exitd.store.models import LeaderRow

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# SQLite binds at most 32,766 parameters in one statement, PostgreSQL 32,767: long id lists are asked
# in parts.
IN_CHUNK = 10_000

SQLITE_PREFIX = "sqlite+aiosqlite:///"
POSTGRES_PREFIX = "postgresql+asyncpg://"


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_PREFIX)


def holder_name() -> str:
    """This daemon among those sharing a database: its host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def application_name(holder: str) -> str:
    """The PostgreSQL `application_name` of a daemon's connections: a new leader finds its predecessor's
    sessions by it (exitd/store/leader.py). PostgreSQL keeps 63 bytes of it."""
    return f"exitd {holder}"[:63]


def shown_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def in_chunks(ids: Sequence[str]) -> list[list[str]]:
    """`ids` in parts small enough for one `IN (...)` each."""
    return [list(ids[i : i + IN_CHUNK]) for i in range(0, len(ids), IN_CHUNK)]


async def execute_in(
    session: AsyncSession,
    query: sa.Select[*Ts],
    column: QueryableAttribute[str],
    ids: Sequence[str] | None,
) -> list[sa.Row[*Ts]]:
    """The rows of `query` whose `column` is one of `ids`, asked in parts (in_chunks), each part in the
    query's order; all its rows when `ids` is None (no parameter list to send at all)."""
    if ids is None:
        return list(await session.execute(query))
    rows: list[sa.Row[*Ts]] = []
    for chunk in in_chunks(ids):
        rows += await session.execute(query.where(column.in_(chunk)))
    return rows


async def select_in(
    session: AsyncSession, query: sa.Select[T], column: QueryableAttribute[str], ids: Sequence[str]
) -> list[T]:
    """execute_in for a query of one column or entity: its values."""
    return [row[0] for row in await execute_in(session, query, column, ids)]


def dialect_insert(session: AsyncSession, table: sa.Table) -> Any:
    """An INSERT of the session's dialect, which knows ON CONFLICT (SQLite's and PostgreSQL's alike)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def insert_new(session: AsyncSession, table: sa.Table) -> sa.Insert:
    """An INSERT that skips rows whose key is stored already, in the session's dialect (SQLite's
    `INSERT OR IGNORE`, PostgreSQL's `ON CONFLICT DO NOTHING`)."""
    return dialect_insert(session, table).on_conflict_do_nothing()


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a committed transaction survives power loss; we store packages before broadcasting them.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def sqlite_engine(url: str) -> sa.Engine:
    """A sync engine (pysqlite) on the SQLite file of `url`."""
    return sa.create_engine(url.replace(SQLITE_PREFIX, "sqlite:///", 1))


def run_sync(url: str, work: Callable[[sa.Connection], T]) -> T:
    """`work` on one connection to the database, committed when it returns. For the migrations and the
    CLI, which run without an event loop: SQLite through its sync driver; PostgreSQL through asyncpg
    (`run_sync`) on a loop of a thread of its own, so that a caller already inside a loop may call it too."""
    if not is_postgres(url):
        engine = sqlite_engine(url)
        try:
            with engine.connect() as conn:
                result = work(conn)
                conn.commit()
                return result
        finally:
            engine.dispose()

    async def run() -> T:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                result = await conn.run_sync(work)
                await conn.commit()
                return result
        finally:
            await engine.dispose()

    outcome: list[T] = []
    failure: list[BaseException] = []

    def thread() -> None:
        try:
            outcome.append(asyncio.run(run()))
        except BaseException as e:
            failure.append(e)

    worker = threading.Thread(target=thread, name="exitd-db-sync")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("exitd.store.migrations")))
    # Given as an attribute, not a main option: the ini-style options interpolate '%' (URL-quoted passwords).
    cfg.attributes["url"] = url
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def current_revision(url: str) -> str | None:
    return run_sync(url, lambda conn: MigrationContext.configure(conn).get_current_revision())


def upgrade(url: str) -> None:
    """Bring the database to the newest schema; a no-op when it is already there."""
    cfg = alembic_config(url)
    script = ScriptDirectory.from_config(cfg)
    try:
        current = current_revision(url)
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"{shown_url(url)} has schema revision {current}, unknown to this exitd: "
                "it was written by a newer version"
            )
        command.upgrade(cfg, "head")
    except (sa.exc.DBAPIError, OSError) as e:
        raise StoreError(f"cannot open or migrate {shown_url(url)}: {_reason(url, e)}") from None


def _reason(url: str, error: Exception) -> str:
    reason = str(getattr(error, "orig", None) or error)
    if not is_postgres(url):
        directory = Path(url.removeprefix(SQLITE_PREFIX)).parent
        if not os.access(directory, os.W_OK):
            reason += " (the datadir is not writable: a read-only disk?)"
    return reason


class Store:
    """The async engine and its session factory; repositories take sessions from here.

    On PostgreSQL several daemons may share the database, and only the leader may spend
    (exitd/store/leader.py): `term` is the leadership term this daemon holds, None while it holds none,
    and `leader` says who holds it, for the answers of a standby. On SQLite this daemon always leads.
    `call_timeout` (PostgreSQL; None: none) bounds each statement and connect on the client's side: a
    leader cut off from the database gets an error instead of waiting until the network returns."""

    def __init__(self, url: str, call_timeout: float | None = None) -> None:
        self.url = url
        self.shared = is_postgres(url)
        self.holder = holder_name()
        connect_args: dict[str, Any] = {}
        if self.shared:
            connect_args["server_settings"] = {"application_name": application_name(self.holder)}
            if call_timeout is not None:
                connect_args.update(command_timeout=call_timeout, timeout=call_timeout)
        self.engine: AsyncEngine = create_async_engine(
            url, pool_pre_ping=self.shared, connect_args=connect_args
        )
        if not self.shared:
            event.listen(self.engine.sync_engine, "connect", _set_sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.term: int | None = None
        self.leader = "no leader yet"

    @property
    def is_leader(self) -> bool:
        return not self.shared or self.term is not None

    @asynccontextmanager
    async def session(self, fenced: bool = False) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends, rolled back on any error. A `fenced` one, for
        every write only the leader may make (one that spends: a child, a split, a coin reservation; one
        that changes exits: a start, a state, an error, a child's status; one that changes the VTXOs
        exitd may exit: an import, what barkd says of one, one marked gone), on a shared database first
        checks, holding the leader row until it commits, that this daemon's term is still the current
        one: a deposed leader's write fails with NotLeader instead of overwriting its successor's."""
        async with self.sessions() as session, session.begin():
            if fenced and self.shared:
                await self._fence(session)
            yield session

    async def _fence(self, session: AsyncSession) -> None:
        if self.term is None:
            raise NotLeader(
                f"this exitd is a standby and may not spend or change exits or VTXOs; {self.leader}"
            )
        query = select(LeaderRow).where(LeaderRow.id == 1).with_for_update(read=True)
        row = (await session.execute(query)).scalar_one()
        if row.term != self.term:
            raise NotLeader(
                f"this exitd led in term {self.term} and was deposed; the leader is {row.holder} "
                f"(term {row.term}, REST {row.rest_url})"
            )
        session.info[FENCED] = True

    def stepped_down(self, error: BaseException) -> bool:
        """Whether `error` is what a leader meets once it lost its term or its database (a shared one):
        refused as no longer the leader, or its connection gone. Expected on the way to standing by,
        not a bug."""
        if not self.shared:
            return False
        if isinstance(error, NotLeader) or not self.is_leader:
            return True
        lost = isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated
        return lost or isinstance(error, OSError | TimeoutError)

    async def check_leader(self) -> None:
        """Raise NotLeader unless this daemon may spend now (before a broadcast that stores nothing first)."""
        async with self.session(fenced=True):
            pass

    async def close(self) -> None:
        await self.engine.dispose()


FENCED = "exitd_fenced"


def require_fenced(session: AsyncSession) -> None:
    """For the writes only the leader may make (those that spend, and those that change which VTXOs exitd
    exits): on a shared database, only inside a fenced session (Store.session with fenced=True); such a
    write outside one is a bug that could spend twice, or race the leader, after a failover."""
    if session.get_bind().dialect.name == "postgresql" and not session.info.get(FENCED):
        raise NotLeader("a leader-only write outside a fenced transaction (Store.session(fenced=True))")
