"""Leader election among the daemons sharing one PostgreSQL database: one leads (runs the engine, the guard
and the wallet's spending), the others stand by, serve reads, and take over when the leader is gone.

Two mechanisms, for two jobs:
- Exclusion: a session-level advisory lock, held on a connection of its own, which PostgreSQL drops the
  moment that session ends. The session proves it is alive: it pings every sixth of `failover_timeout`
  from a thread of its own (a daemon busy with a long cycle still pings), and the server ends it once it
  has been idle for half the timeout (`idle_session_timeout`). So a leader whose process died (its socket
  closes), whose machine is gone, or whose network to the database is cut (even when no TCP reset ever
  arrives and the server's side of the socket looks alive) loses the lock within half the timeout; a
  standby, trying every sixth, takes it within the rest.
- Fencing: each new leader raises the leader row's `term` and keeps its own. Every transaction that
  spends or changes exits (a start, a state or error, a child) checks that term, holding the row
  (Store.session(fenced=True)); a deposed leader that still runs fails its next such write, and cannot
  write an old state over its successor's. The new leader first ends every session of its predecessor
  (a cut-off leader's transaction would otherwise hold the row, and any exit it was writing, until its
  TCP connection timed out), then raises the term, so it reads everything the old leader committed and
  nothing it may still commit.

A leader whose ping fails steps down at once (`lost()`): it gives up its term, so no fenced write of its
own commits any more, stops its engine and, once the database answers again, stands by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from exitd.log import event, get_logger
from exitd.store.db import Store, application_name
from exitd.store.exits import now
from exitd.store.models import LeaderRow

log = get_logger("leader")

T = TypeVar("T")

LEADER_LOCK = 0x657869_7464_01  # the advisory lock key of leadership ("exitd", 1)

DATABASE_ERRORS = (sa.exc.SQLAlchemyError, OSError, TimeoutError)


async def cut_off(session: AsyncSession, holder: str) -> int:
    """End every session of the daemon `holder` (a deposed leader): their transactions roll back and free
    the rows they hold. The server does it, whatever the network between it and that daemon. How many."""
    query = sa.text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = :name AND pid <> pg_backend_pid()"
    )
    return int((await session.execute(query, {"name": application_name(holder)})).scalar_one())


async def take_term(store: Store, holder: str, rest_url: str) -> int:
    """Become the leader of a new term in the leader row, having first ended the sessions of the last
    leader (when another). Waits for the fenced transactions of the previous term to end (they hold the
    row): whatever is read after it includes all they wrote. The caller sets `store.term` to it once it has
    read that (until then the daemon serves no writes)."""
    async with store.session() as session:
        previous = (await session.execute(select(LeaderRow.holder).where(LeaderRow.id == 1))).scalar_one()
        if previous and previous != holder:
            ended = await cut_off(session, previous)
            if ended:
                event(log, logging.WARNING, "predecessor_cut_off", holder=previous, sessions=ended)
        term = (
            await session.execute(
                update(LeaderRow)
                .where(LeaderRow.id == 1)
                .values(term=LeaderRow.term + 1, holder=holder, rest_url=rest_url, since=now())
                .returning(LeaderRow.term)
            )
        ).scalar_one()
    store.leader = f"this exitd ({holder}) is taking over as the leader of term {term}; retry in a moment"
    return term


async def read_leader(store: Store) -> str:
    """Who leads, as the leader row tells, for a standby's answers."""
    async with store.session() as session:
        row = (await session.execute(select(LeaderRow).where(LeaderRow.id == 1))).scalar_one()
    if not row.holder:
        return "no exitd has led yet"
    return f"the leader is {row.holder} (term {row.term}, REST {row.rest_url}); send writes there"


class LockSession:
    """The advisory lock's connection, used only on an event loop of a thread of its own: its pings go on
    however long the daemon's own loop is busy, so a slow leader is not taken for a dead one."""

    def __init__(self, url: str, holder: str, failover_timeout: float) -> None:
        self.poll = failover_timeout / 6
        keepalive = max(1, int(failover_timeout / 6))
        self._engine = create_async_engine(
            url,
            poolclass=NullPool,
            connect_args={
                "timeout": self.poll * 2,
                "server_settings": {
                    # Idle longer than half the timeout (three pings missed): the server ends the session.
                    "idle_session_timeout": str(int(failover_timeout * 500)),
                    # And TCP's own probes, for a leader's machine that is gone.
                    "tcp_keepalives_idle": str(keepalive),
                    "tcp_keepalives_interval": str(keepalive),
                    "tcp_keepalives_count": "2",
                    "application_name": application_name(holder),
                },
            },
        )
        self._conn: AsyncConnection | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="exitd-leader-lock", daemon=True)
        self._thread.start()
        self._busy = asyncio.Lock()  # bound to the thread's loop at its first use there
        self._pinging: asyncio.Future[None] | None = None

    def _run(self, work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """`work` on the lock's loop, bounded by two polls, awaitable from the daemon's."""

        async def bounded() -> T:
            async with self._busy:
                return await asyncio.wait_for(work, self.poll * 2)

        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(bounded(), self._loop))

    async def try_lock(self) -> bool:
        return await self._run(self._try_lock())

    async def _try_lock(self) -> bool:
        if self._conn is None:
            conn = await self._engine.connect()
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        query = sa.text("SELECT pg_try_advisory_lock(:key)")
        return bool((await self._conn.execute(query, {"key": LEADER_LOCK})).scalar())

    def lost(self) -> asyncio.Future[None]:
        """Ping the held lock's session every poll, on the lock's loop; the future fails (with the
        database's error) when a ping does."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._ping_until_lost(), self._loop))

    async def _ping_until_lost(self) -> None:
        while True:
            async with self._busy:
                assert self._conn is not None
                await asyncio.wait_for(self._conn.execute(sa.text("SELECT 1")), self.poll * 2)
            await asyncio.sleep(self.poll)

    async def drop(self) -> None:
        """End the session (and the lock with it); a session the network lost is abandoned."""
        await self._run(self._drop())

    async def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), self.poll)
            except DATABASE_ERRORS:
                await conn.invalidate()

    async def close(self) -> None:
        if self._loop.is_closed():
            return

        async def shut() -> None:
            await self._drop()
            await self._engine.dispose()

        with contextlib.suppress(*DATABASE_ERRORS):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(shut(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()


class Leadership:
    """One daemon's part in the election on `store`'s database."""

    def __init__(self, store: Store, rest_url: str, failover_timeout: float) -> None:
        self.store = store
        self.rest_url = rest_url
        self.holder = store.holder
        self.poll = failover_timeout / 6
        self._lock = LockSession(store.url, self.holder, failover_timeout)

    async def acquire(
        self,
        stopping: asyncio.Event,
        standing_by: Callable[[], Awaitable[None]],
        taking_over: Callable[[], Awaitable[None]],
    ) -> bool:
        """Stand by until this daemon leads (True) or is asked to stop (False). `standing_by` runs after
        each try that did not win (the standby refreshes what it serves); `taking_over` once it won and
        holds the new term, before the term is set on the store (it reads what the last leader stored)."""
        announced = failing = False
        while not stopping.is_set():
            try:
                won = await self._lock.try_lock()
                failing = False
            except DATABASE_ERRORS as e:
                if not failing:  # once per outage, not at every try
                    event(log, logging.WARNING, "leader_lock_failed", error=str(e) or type(e).__name__)
                    failing = True
                with contextlib.suppress(*DATABASE_ERRORS):
                    await self._lock.drop()
                won = False
            if won:
                try:
                    term = await take_term(self.store, self.holder, self.rest_url)
                    await taking_over()
                except DATABASE_ERRORS as e:
                    event(log, logging.WARNING, "take_over_failed", error=str(e) or type(e).__name__)
                    await self._pause(stopping)
                    continue
                self.store.term = term
                event(log, logging.INFO, "leader_elected", holder=self.holder, term=term)
                return True
            try:
                self.store.leader = await read_leader(self.store)
                if not announced:
                    event(log, logging.INFO, "standing_by", leader=self.store.leader)
                    announced = True
                await standing_by()
            except DATABASE_ERRORS as e:
                event(log, logging.WARNING, "standby_refresh_failed", error=str(e) or type(e).__name__)
            await self._pause(stopping)
        return False

    async def hold(self, term_over: asyncio.Event) -> bool:
        """While leading, until `term_over`: True when the lock's session failed, having given up the term
        first (no spending write of this daemon commits after that) and said so in one line."""
        lost = self._lock.lost()
        over: asyncio.Future[Any] = asyncio.ensure_future(term_over.wait())
        await asyncio.wait({lost, over}, return_when=asyncio.FIRST_COMPLETED)
        over.cancel()
        if not lost.done():
            lost.cancel()
            return False
        error = lost.exception() or TimeoutError()
        term, self.store.term = self.store.term, None
        self.store.leader = "this exitd lost its leadership (its database connection failed) and stands by"
        event(
            log,
            logging.ERROR,
            "leadership_lost",
            term=term,
            error=str(error) or type(error).__name__,
            action="stopped spending; stands by once the database answers",
        )
        with contextlib.suppress(*DATABASE_ERRORS):
            await self._lock.drop()
        return True

    async def _pause(self, stopping: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), self.poll)

    async def close(self) -> None:
        """Give the lock up (by closing its connection): a standby takes over at its next try."""
        await self._lock.close()
