"""Leader election among the daemons sharing one PostgreSQL database: one leads (runs the engine, the guard
and the wallet's spending), the others stand by, serve reads, and take over when the leader is gone.

Two mechanisms, for two jobs:
- Exclusion: a session-level advisory lock, held on a connection of its own for as long as the leader
  lives. PostgreSQL drops it the moment that connection ends: at once when the leader's process dies (its
  socket closes), and after TCP keepalives fail when its machine or network is gone (the keepalive times
  follow `failover_timeout`). A standby tries the lock every sixth of that timeout.
- Fencing: each new leader raises the leader row's `term` and keeps its own. Every spending transaction
  checks that term, holding the row (Store.session(spends=True)); a deposed leader that still runs (a network
  cut that the database noticed first) fails its next spending write, and the new leader's term bump waits
  for any fenced transaction in flight, so it reads everything the old leader committed.

A leader that loses its lock connection stops at once (LeadershipLost): it cannot know whether a standby
took over, and restarting clean (as a standby) is simpler than demoting a running engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.exits import now
from exitd.store.models import LeaderRow

log = get_logger("leader")

LEADER_LOCK = 0x657869_7464_01  # the advisory lock key of leadership ("exitd", 1)


class LeadershipLost(Exception):
    """The lock connection failed: this daemon may no longer be the leader, and stops."""


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def take_term(store: Store, holder: str, rest_url: str) -> int:
    """Become the leader of a new term in the leader row. Waits for the fenced transactions of the
    previous term to end (they hold the row): whatever is read after it includes all they wrote. The
    caller sets `store.term` to it once it has read that (until then the daemon serves no writes)."""
    async with store.session() as session:
        term = (
            await session.execute(
                update(LeaderRow)
                .where(LeaderRow.id == 1)
                .values(term=LeaderRow.term + 1, holder=holder, rest_url=rest_url, since=now())
                .returning(LeaderRow.term)
            )
        ).scalar_one()
    store.leader = f"the leader is this exitd ({holder}, term {term})"
    return term


async def read_leader(store: Store) -> str:
    """Who leads, as the leader row tells, for a standby's answers."""
    async with store.session() as session:
        row = (await session.execute(select(LeaderRow).where(LeaderRow.id == 1))).scalar_one()
    if not row.holder:
        return "no exitd has led yet"
    return f"the leader is {row.holder} (term {row.term}, REST {row.rest_url}); send writes there"


class Leadership:
    """One daemon's part in the election on `store`'s database."""

    def __init__(self, store: Store, rest_url: str, failover_timeout: float) -> None:
        self.store = store
        self.rest_url = rest_url
        self.holder = holder_name()
        self.poll = failover_timeout / 6
        # The server drops a silent leader's connection (and its lock) after idle + count * interval:
        # half the timeout, leaving the rest for a standby's next try and its term bump.
        keepalive = max(1, int(failover_timeout / 6))
        self._lock_engine = create_async_engine(
            store.url,
            poolclass=NullPool,
            connect_args={
                "server_settings": {
                    "tcp_keepalives_idle": str(keepalive),
                    "tcp_keepalives_interval": str(keepalive),
                    "tcp_keepalives_count": "2",
                    "application_name": f"exitd leader lock {self.holder}",
                }
            },
        )
        self._lock: AsyncConnection | None = None

    async def _try_lock(self) -> bool:
        if self._lock is None:
            conn = await self._lock_engine.connect()
            self._lock = await conn.execution_options(isolation_level="AUTOCOMMIT")
        query = sa.text("SELECT pg_try_advisory_lock(:key)")
        return bool((await self._lock.execute(query, {"key": LEADER_LOCK})).scalar())

    async def _drop_lock_connection(self) -> None:
        if self._lock is not None:
            conn, self._lock = self._lock, None
            try:
                await asyncio.wait_for(conn.close(), self.poll)
            except (sa.exc.SQLAlchemyError, OSError, TimeoutError):
                await conn.invalidate()

    async def acquire(
        self,
        stopping: asyncio.Event,
        standing_by: Callable[[], Awaitable[None]],
        taking_over: Callable[[], Awaitable[None]],
    ) -> bool:
        """Stand by until this daemon leads (True) or is asked to stop (False). `standing_by` runs after
        each try that did not win (the standby refreshes what it serves); `taking_over` once it won and
        holds the new term, before the term is set on the store (it reads what the last leader stored)."""
        announced = False
        while not stopping.is_set():
            try:
                won = await asyncio.wait_for(self._try_lock(), self.poll * 2)
            except (sa.exc.SQLAlchemyError, OSError, TimeoutError) as e:
                event(log, logging.WARNING, "leader_lock_failed", error=str(e) or type(e).__name__)
                await self._drop_lock_connection()
                won = False
            if won:
                term = await take_term(self.store, self.holder, self.rest_url)
                await taking_over()
                self.store.term = term
                event(log, logging.INFO, "leader_elected", holder=self.holder, term=term)
                return True
            try:
                self.store.leader = await read_leader(self.store)
                if not announced:
                    event(log, logging.INFO, "standing_by", leader=self.store.leader)
                    announced = True
                await standing_by()
            except (sa.exc.SQLAlchemyError, OSError) as e:
                event(log, logging.WARNING, "standby_refresh_failed", error=str(e))
            await self._pause(stopping)
        return False

    async def hold(self, stopping: asyncio.Event) -> None:
        """While leading: check the lock connection every poll; raise LeadershipLost when it fails, having
        first given up the term (no spending write of this daemon commits after that)."""
        assert self._lock is not None
        while not stopping.is_set():
            try:
                await asyncio.wait_for(self._lock.execute(sa.text("SELECT 1")), self.poll * 2)
            except (sa.exc.SQLAlchemyError, OSError, TimeoutError) as e:
                self.store.term = None
                self.store.leader = "this exitd lost its leadership and is stopping"
                event(log, logging.ERROR, "leadership_lost", error=str(e) or type(e).__name__)
                raise LeadershipLost(f"the leader lock's connection failed: {e}") from None
            await self._pause(stopping)

    async def _pause(self, stopping: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), self.poll)

    async def close(self) -> None:
        """Give the lock up (by closing its connection): a standby takes over at its next try."""
        await self._drop_lock_connection()
        await self._lock_engine.dispose()
