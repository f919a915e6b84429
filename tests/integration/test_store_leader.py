"""Leader election and fencing on a real PostgreSQL database (exitd/store/leader.py), and SQLite's single
daemon that always leads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from exitd.ark.encoding import OutPoint
from exitd.engine.model import ChildRecord, ChildSource, ChildStatus, ExitBook
from exitd.engine.persist import load_book, persist_states, save_children
from exitd.engine.states import ExitState, ExitStateKind
from exitd.store.db import Store, upgrade
from exitd.store.errors import NotLeader
from exitd.store.leader import Leadership, take_term
from exitd.store.wallet import add_reservations, list_reservations
from tests.integration.test_book_refresh import CANCELED, E1, LEAF_A, PROCESSING, start
from tests.support.tcp_proxy import TcpProxy

FAILOVER = 3.0  # the smallest failover_timeout: a try every 0.5 s


async def nothing() -> None:
    return None


async def stand_by_for(leadership: Leadership, seconds: float) -> bool:
    """acquire(), given up after `seconds`: True if it won meanwhile."""
    stopping = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stopping.set)
    return await leadership.acquire(stopping, nothing, nothing)


async def test_one_leads_the_other_stands_by_then_takes_over_when_the_lock_is_gone(
    postgres_url: str,
) -> None:
    stores = [Store(postgres_url), Store(postgres_url)]
    first = Leadership(stores[0], "http://127.0.0.1:1", FAILOVER)
    second = Leadership(stores[1], "http://127.0.0.1:2", FAILOVER)
    first.holder, second.holder = "first:1", "second:2"  # one process plays both daemons
    try:
        assert not stores[0].is_leader and not stores[1].is_leader
        assert await stand_by_for(first, 1.0)
        assert stores[0].is_leader and stores[0].term == 1
        assert not await stand_by_for(second, 1.5)
        assert (
            stores[1].term is None and f"{first.holder} (term 1, REST http://127.0.0.1:1)" in stores[1].leader
        )

        async with stores[0].session(fenced=True) as session:
            add_reservations(session, [OutPoint.of("aa" * 32, 0)], "bb" * 32, "cpfp")
        with pytest.raises(NotLeader, match=r"this exitd is a standby.*first:1"):
            async with stores[1].session(fenced=True) as session:
                add_reservations(session, [OutPoint.of("aa" * 32, 1)], "cc" * 32, "cpfp")

        await first.close()  # the leader's lock connection ends, as when its process dies
        began = time.monotonic()
        assert await stand_by_for(second, 10.0)
        assert time.monotonic() - began <= FAILOVER
        assert stores[1].term == 2
        async with stores[1].session(fenced=True) as session:
            add_reservations(session, [OutPoint.of("aa" * 32, 1)], "cc" * 32, "cpfp")
            assert len(await list_reservations(session)) == 2
    finally:
        for leadership in (first, second):
            await leadership.close()
        for store in stores:
            await store.close()


async def test_a_deposed_leader_cannot_spend(postgres_url: str) -> None:
    """A leader whose term was taken (its lock connection lost while it still runs) fails its next spending
    write; the new term waits for a fenced transaction in flight, then sees what it committed."""
    old, new = Store(postgres_url), Store(postgres_url)
    try:
        old.term = await take_term(old, "old:1", "http://127.0.0.1:1")
        async with old.session(fenced=True) as session:
            add_reservations(session, [OutPoint.of("aa" * 32, 0)], "bb" * 32, "cpfp")
            taking = asyncio.create_task(take_term(new, "new:2", "http://127.0.0.1:2"))
            await asyncio.sleep(0.5)
            assert not taking.done()  # the fenced transaction holds the leader row
        new.term = await taking
        assert new.term == 2
        with pytest.raises(NotLeader, match=r"led in term 1 and was deposed; the leader is new:2 \(term 2"):
            async with old.session(fenced=True) as session:
                add_reservations(session, [OutPoint.of("aa" * 32, 1)], "cc" * 32, "cpfp")
        with pytest.raises(NotLeader, match="deposed"):
            await old.check_leader()
        async with new.session(fenced=True) as session:
            assert [(r.txid, r.vout) for r in await list_reservations(session)] == [("aa" * 32, 0)]
    finally:
        await old.close()
        await new.close()


async def test_a_deposed_leader_cannot_write_an_exit_over_its_successors(postgres_url: str) -> None:
    """A deposed leader whose cycle resumes (its link back) holds an out-of-date book: its state, error and
    child writes are fenced like its spending ones, so they fail and the new leader's state stays."""
    old, new = Store(postgres_url), Store(postgres_url)
    try:
        old.term = await take_term(old, "old:1", "http://127.0.0.1:1")
        await start(old, {E1: LEAF_A}, stamp=1)
        stale = ExitBook()
        await load_book(old, stale)
        new.term = await take_term(new, "new:2", "http://127.0.0.1:2")
        current = ExitBook()
        await load_book(new, current)
        await persist_states(new, [(current.exits[E1], PROCESSING)])

        with pytest.raises(
            NotLeader, match=r"led in term 1 and was deposed; the leader is new:2 \(term 2"
        ) as refused:
            await persist_states(old, [(stale.exits[E1], CANCELED)])
        # The cycle that met it logs one line: stepping down is expected; a bug still is not.
        assert old.stepped_down(refused.value) and not new.stepped_down(ValueError("a bug"))
        stale.exits[E1].error = None
        stale.exits[E1].stored_error = "stale"  # an error cleared is a write too
        with pytest.raises(NotLeader, match="deposed"):
            await persist_states(old, [(stale.exits[E1], stale.exits[E1].state)])
        child = ChildRecord(
            "c1" * 32, LEAF_A, b"c", 500, 110, 3_000, ChildSource.WALLET, ChildStatus.BROADCAST, None
        )
        with pytest.raises(NotLeader, match="deposed"):
            await save_children(old, None, [child])

        stored = ExitBook()
        await load_book(new, stored)
        assert stored.exits[E1].state.kind is ExitStateKind.PROCESSING
        assert stored.exits[E1].state.same_as(PROCESSING) and stored.exits[E1].stored_error is None
        assert stored.txs[LEAF_A].children == {}
        old.term = None  # a standby's own writes are refused the same way
        with pytest.raises(NotLeader, match="standby"):
            await persist_states(old, [(stale.exits[E1], ExitState(ExitStateKind.CANCELED, 102))])
    finally:
        await old.close()
        await new.close()


async def test_a_call_on_a_connection_cut_off_fails_within_the_call_timeout(postgres_url: str) -> None:
    """A leader cut from the database (no reset: a blackhole) does not wait for the network to return: its
    call in flight fails within the store's call_timeout, as one the cycle counts as stepping down."""
    parsed = sa.engine.make_url(postgres_url)
    assert parsed.port is not None
    proxy = TcpProxy(parsed.port)
    store = Store(parsed.set(port=proxy.port).render_as_string(hide_password=False), call_timeout=1.0)
    try:
        store.term = await take_term(store, "cut:1", "")
        proxy.blackhole()
        began = time.monotonic()
        with pytest.raises((sa.exc.DBAPIError, TimeoutError)) as failed:
            async with store.session(fenced=True) as session:
                await session.execute(sa.text("SELECT 1"))
        assert time.monotonic() - began < 5  # a ping and a connect, a second each at most
        assert store.stepped_down(failed.value)
    finally:
        proxy.restore()
        await store.close()
        proxy.stop()


async def test_a_spending_write_outside_a_fenced_transaction_is_refused(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        store.term = await take_term(store, "one:1", "")
        with pytest.raises(NotLeader, match="outside a fenced transaction"):
            async with store.session() as session:
                add_reservations(session, [OutPoint.of("aa" * 32, 0)], "bb" * 32, "cpfp")
    finally:
        await store.close()


async def test_on_sqlite_the_one_daemon_always_leads(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/exitd.sqlite3"
    upgrade(url)
    store = Store(url)
    try:
        assert store.is_leader and not store.shared
        async with store.session(fenced=True) as session:
            add_reservations(session, [OutPoint.of("aa" * 32, 0)], "bb" * 32, "cpfp")
        await store.check_leader()
    finally:
        await store.close()


async def test_a_new_leader_ends_the_sessions_of_a_predecessor_cut_off_mid_transaction(
    postgres_url: str,
) -> None:
    """A leader cut off from the database in a fenced transaction holds the leader row while the server
    thinks its connection alive; the next leader ends that session (the server rolls it back) instead of
    waiting for TCP to give up, and takes its term at once."""
    old, new = Store(postgres_url), Store(postgres_url)
    try:
        old.term = await take_term(old, old.holder, "http://127.0.0.1:1")
        async with contextlib.AsyncExitStack() as cut_off:
            session = await cut_off.enter_async_context(old.session(fenced=True))
            add_reservations(session, [OutPoint.of("aa" * 32, 0)], "bb" * 32, "cpfp")
            await session.flush()  # the row is held; the session then never answers again
            began = time.monotonic()
            new.term = await asyncio.wait_for(take_term(new, "new:2", "http://127.0.0.1:2"), 10)
            assert new.term == 2 and time.monotonic() - began < 2
            with pytest.raises(sa.exc.DBAPIError):
                await cut_off.aclose()  # its commit finds the session ended
        async with new.session(fenced=True) as session:
            assert await list_reservations(session) == []  # rolled back: nothing of it was committed
    finally:
        await old.close()
        await new.close()
