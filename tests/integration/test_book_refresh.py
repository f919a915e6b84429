"""A refresh of the exits in memory (a standby's reload, a new leader's takeover) reads only what can have
changed, and leaves the book exactly as a whole load would, on either backend."""

from __future__ import annotations

from exitd.engine.model import ExitBook
from exitd.engine.persist import LoadedRows, load_book, refresh_book
from exitd.engine.records import encode_state
from exitd.engine.states import ExitState, ExitStateKind
from exitd.store.db import Store, upgrade
from exitd.store.exits import (
    ExitStart,
    ExitUpdate,
    StoredChild,
    StoredExitTx,
    insert_exit_txs,
    start_exits,
    store_children,
    update_exits,
)
from tests.integration.test_store import bare_vtxo_row

ROOT, LEAF_A, LEAF_B, LEAF_C = (f"{n:02x}" * 32 for n in (1, 2, 3, 4))
E1, E2, E3 = (f"{n:02x}" * 32 + ":0" for n in (11, 12, 13))
START = ExitState(ExitStateKind.START, 100)
PROCESSING = ExitState(ExitStateKind.PROCESSING, 101)
CANCELED = ExitState(ExitStateKind.CANCELED, 101)


async def start(
    store: Store, exits: dict[str, str], stamp: int, restarted: frozenset[str] = frozenset()
) -> None:
    """Start each exit of `exits` (VTXO id -> leaf txid) under ROOT, storing the VTXOs and txs not stored."""
    async with store.session() as session:
        session.add_all(bare_vtxo_row(v) for v in exits if v not in restarted)
        await session.flush()
        txs = [StoredExitTx(ROOT, b"root", 150, "ff" * 32, 1)]
        txs += [StoredExitTx(leaf, leaf.encode(), 120, ROOT, 1) for leaf in exits.values()]
        await insert_exit_txs(session, txs)
        starts = [ExitStart(v, (ROOT, leaf)) for v, leaf in exits.items()]
        await start_exits(session, starts, restarted, encode_state(START), "start", "user", stamp)


def child(txid: str, parent: str, status: str, height: int | None = None) -> StoredChild:
    block_hash = "ee" * 32 if height is not None else None
    return StoredChild(txid, parent, txid.encode(), 500, 110, 3_000, "wallet", status, height, block_hash)


async def refreshed_as_loaded(store: Store, book: ExitBook, last: LoadedRows) -> LoadedRows:
    """Refresh `book` and check it against a whole load: the same exits, txs and children, in order."""
    rows = await refresh_book(store, book, last)
    whole = ExitBook()
    assert rows == await load_book(store, whole)
    assert list(book.exits.items()) == list(whole.exits.items())
    assert book.txs == whole.txs
    assert [list(t.children) for t in book.txs.values()] == [list(whole.txs[t].children) for t in book.txs]
    return rows


async def test_a_refresh_reads_what_changed_and_leaves_the_book_as_a_whole_load_would(
    database_url: str,
) -> None:
    upgrade(database_url)
    store = Store(database_url)
    try:
        await start(store, {E1: LEAF_A, E2: LEAF_B}, stamp=1)
        book = ExitBook()
        last = await load_book(store, book)
        untouched = book.exits[E2]

        # What the leader writes meanwhile: a state change, children, a new exit sharing the root.
        async with store.session() as session:
            await update_exits(session, [ExitUpdate(E1, None, encode_state(PROCESSING), "processing")])
            await store_children(
                session, [child("c1" * 32, ROOT, "broadcast"), child("c2" * 32, LEAF_A, "stored")]
            )
        await start(store, {E3: LEAF_C}, stamp=2)
        last = await refreshed_as_loaded(store, book, last)
        assert book.exits[E2] is untouched  # its row did not change: not decoded again
        assert book.exits[E1].state == PROCESSING and len(book.txs) == 4
        async with store.session() as session:
            await update_exits(session, [ExitUpdate(E2, None, encode_state(CANCELED), "canceled")])
        last = await refreshed_as_loaded(store, book, last)
        assert book.exits[E2].state == CANCELED

        # A child confirms, one is replaced, the canceled exit restarts (its row reset), one gets an error.
        async with store.session() as session:
            await store_children(
                session,
                [child("c1" * 32, ROOT, "confirmed", 102), child("c2" * 32, LEAF_A, "replaced")],
            )
            await store_children(session, [child("c3" * 32, LEAF_A, "broadcast")])
            await update_exits(session, [ExitUpdate(E3, '{"kind":"InternalError"}')])
        await start(store, {E2: LEAF_B}, stamp=3, restarted=frozenset({E2}))
        await refreshed_as_loaded(store, book, last)
        assert book.exits[E2].state == START and book.exits[E3].stored_error is not None
        assert book.txs[ROOT].children["c1" * 32].block is not None
        assert list(book.txs[LEAF_A].children) == ["c2" * 32, "c3" * 32]
    finally:
        await store.close()
