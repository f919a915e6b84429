"""The book in the store: read whole at start-up, written in one session per step of a cycle (the records
of states and errors themselves are records.py's).

Each function here writes all it is given in one transaction: at a thousand exits, a session per exit or
per child would cost a cycle more in SQLite than everything else together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from exitd.chain.view import BlockRef
from exitd.engine.model import ChildRecord, ChildSource, ChildStatus, ExitBook, LiveExit, TrackedTx
from exitd.engine.records import decode_error, decode_state, encode_error, encode_state
from exitd.engine.states import ExitState, ExitStateKind, TxStatusKind
from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.exits import (
    ExitStart,
    ExitUpdate,
    StoredChild,
    StoredExit,
    StoredExitTx,
    insert_exit_txs,
    load_child_states,
    load_children,
    load_exit_txs,
    load_exits,
    load_links,
    start_exits,
    store_children,
    update_exits,
)
from exitd.store.vtxos import set_vtxos_state, vtxo_terms

log = get_logger("engine")


class ReservationHolder(Protocol):
    """The on-chain wallet as the records see it: it frees the coins of a child that lost or was dropped."""

    async def release_reservations(self, session: AsyncSession, spending_txid: str) -> None: ...


@dataclass(frozen=True)
class LoadedRows:
    """The exits' rows as the book was last filled from them: a refresh reads the rows again and builds
    anew only the exits whose row differs (see refresh_book)."""

    exits: dict[str, StoredExit]


def block_of(height: int | None, block_hash: str | None) -> BlockRef | None:
    return BlockRef(height, block_hash) if height is not None and block_hash else None


def child_record(c: StoredChild) -> ChildRecord:
    block = block_of(c.block_height, c.block_hash)
    return ChildRecord(
        c.txid,
        c.parent_txid,
        c.raw,
        c.fee,
        c.vsize,
        c.package_rate,
        ChildSource(c.source),
        ChildStatus(c.status),
        block,
    )


def live_exit(row: StoredExit, terms: tuple[int, int], txids: list[str]) -> LiveExit:
    amount, expiry_height = terms
    return LiveExit(
        vtxo_id=row.vtxo_id,
        amount=amount,
        expiry_height=expiry_height,
        txids=txids,
        state=decode_state(row.state),
        started_by=row.started_by,
        created_at=row.created_at,
        error=decode_error(row.error),
        stored_error=row.error,
    )


def tracked_tx(r: StoredExitTx) -> TrackedTx:
    return TrackedTx(r.txid, r.raw, r.vsize, r.input_txid, r.anchor_vout)


async def load_book(store: Store, book: ExitBook) -> LoadedRows:
    """Fill `book` with every exit and its txs and children from the store."""
    async with store.session() as session:
        rows = await load_exits(session)
        links = await load_links(session, None)
        tx_rows = await load_exit_txs(session, None)
        children = await load_children(session, None)
        terms = await vtxo_terms(session)
    book.txs = {r.txid: tracked_tx(r) for r in tx_rows}
    for c in children:
        book.txs[c.parent_txid].children[c.txid] = child_record(c)
    book.exits = {r.vtxo_id: live_exit(r, terms[r.vtxo_id], links.get(r.vtxo_id, [])) for r in rows}
    return LoadedRows({r.vtxo_id: r for r in rows})


async def refresh_book(store: Store, book: ExitBook, last: LoadedRows) -> LoadedRows:
    """Bring `book`, filled from `last` and not changed since, to what the store holds now, as load_book
    would, reading only what can have changed: every exit's row (its state, error, start) and every
    child's status and block. An exit whose row is as it was keeps its object; a changed one is decoded
    again; a new one (its start time another) is read whole, with its txs, VTXO terms and children. What
    is reused never changes once stored: a VTXO's exit txs (a restart links the same ones again) and
    terms, a tx (by txid), a child's tx, fee and size.
    A new leader's takeover and a standby's reload at 100,000 exits: the exits' rows, not every tx."""
    async with store.session() as session:
        rows = await load_exits(session)
        changed = {r.vtxo_id: r for r in rows if last.exits.get(r.vtxo_id) != r}
        new = [
            v for v, r in changed.items() if v not in last.exits or last.exits[v].created_at != r.created_at
        ]
        links = await load_links(session, new) if new else {}
        terms = await vtxo_terms(session, new) if new else {}
        missing = list(dict.fromkeys(t for txids in links.values() for t in txids if t not in book.txs))
        tx_rows = await load_exit_txs(session, missing) if missing else []
        states = await load_child_states(session)
        known = {c.txid: c for t in book.txs.values() for c in t.children.values()}
        unknown_parents = list(dict.fromkeys(s.parent_txid for s in states if s.txid not in known))
        children = await load_children(session, unknown_parents) if unknown_parents else []
    exits: dict[str, LiveExit] = {}
    for r in rows:
        old = book.exits.get(r.vtxo_id)
        if old is None or r.vtxo_id in links:
            exits[r.vtxo_id] = live_exit(r, terms[r.vtxo_id], links.get(r.vtxo_id, []))
        elif r.vtxo_id in changed:
            exits[r.vtxo_id] = live_exit(r, (old.amount, old.expiry_height), old.txids)
        else:
            exits[r.vtxo_id] = old
    if new or len(exits) != len(book.exits):  # the txs the exits need are others
        txs = {r.txid: tracked_tx(r) for r in tx_rows}
        for e in exits.values():
            txs.update((t, book.txs[t]) for t in e.txids if t not in txs)
    else:
        txs = book.txs
    for c in known.values():  # every child is placed again below, from the store's rows
        if c.parent_txid in txs:
            txs[c.parent_txid].children = {}
    new_children = {c.txid: c for c in children}
    for s in states:
        before = known.get(s.txid)
        if before is None:
            record = child_record(new_children[s.txid])
        else:
            block = block_of(s.block_height, s.block_hash)
            record = replace(before, status=ChildStatus(s.status), block=block)
        txs[s.parent_txid].children[s.txid] = record
    book.txs, book.exits = txs, exits
    return LoadedRows({r.vtxo_id: r for r in rows})


def as_stored(c: ChildRecord) -> StoredChild:
    return StoredChild(
        txid=c.txid,
        parent_txid=c.parent_txid,
        raw=c.raw,
        fee=c.fee,
        vsize=c.vsize,
        package_rate=c.package_rate,
        source=c.source.value,
        status=c.status.value,
        block_height=c.block.height if c.block else None,
        block_hash=c.block.hash if c.block else None,
    )


async def save_children(
    store: Store,
    wallet: ReservationHolder | None,
    children: Iterable[ChildRecord],
    release: Iterable[ChildRecord] = (),
) -> None:
    """Store new children and the status and block of known ones; free the coins of ours in `release`."""
    async with store.session(fenced=True) as session:
        await store_children(session, [as_stored(c) for c in children])
        for c in release:
            if c.ours and wallet is not None:
                await wallet.release_reservations(session, c.txid)


async def store_starts(
    store: Store, started: Sequence[LiveExit], new_txs: Iterable[TrackedTx], restarted: set[str]
) -> None:
    """New exits (all in the same state, started by the same), their links and the txs not stored yet, in
    one transaction; their VTXOs become locked. `restarted`: exits canceled before, whose rows are reset."""
    state = started[0].state
    async with store.session(fenced=True) as session:
        await insert_exit_txs(
            session, [StoredExitTx(t.txid, t.raw, t.vsize, t.input_txid, t.anchor_vout) for t in new_txs]
        )
        await start_exits(
            session,
            [ExitStart(e.vtxo_id, tuple(e.txids)) for e in started],
            restarted,
            encode_state(state),
            state.kind.value,
            started[0].started_by,
            started[0].created_at,
        )
        await set_vtxos_state(session, [e.vtxo_id for e in started], "locked")


def stage(state: ExitState) -> str:
    """An exit's state for a log line: its kind and, while processing, its confirmed levels and the status
    of the first tx still to confirm ("processing:1/3:broadcast-with-cpfp")."""
    if state.kind is not ExitStateKind.PROCESSING:
        return state.kind.value
    pending = [
        tx.status.kind.value for tx in state.transactions if tx.status.kind is not TxStatusKind.CONFIRMED
    ]
    confirmed = len(state.transactions) - len(pending)
    return f"processing:{confirmed}/{len(state.transactions)}:{pending[0] if pending else 'confirmed'}"


async def persist_states(store: Store, changes: Sequence[tuple[LiveExit, ExitState]]) -> None:
    """Write in one session the exits whose state or error changed, then give each exit its new state:
    a status read meanwhile (the API does not wait for the cycle lock) sees the old state with the old
    history, never the new state before the history it appended is committed."""
    writes: list[tuple[LiveExit, ExitState | None, str | None]] = []
    for e, new in changes:
        changed = not new.same_as(e.state)
        error = encode_error(e.error) if e.error else None
        if changed or error != e.stored_error:
            writes.append((e, new if changed else None, error))
    if not writes:
        return
    async with store.session(fenced=True) as session:
        await update_exits(
            session,
            [
                ExitUpdate(e.vtxo_id, error, encode_state(moved), moved.kind.value)
                if moved is not None
                else ExitUpdate(e.vtxo_id, error)
                for e, moved, error in writes
            ],
        )
        claimed = [e.vtxo_id for e, m, _ in writes if m is not None and m.kind is ExitStateKind.CLAIMED]
        await set_vtxos_state(session, claimed, "spent")
    for e, moved, error in writes:
        if moved is not None:
            old_stage, new_stage = stage(e.state), stage(moved)
            # A change that moves no stage (a fee detail, the tip it was seen at) is a debug line.
            level = logging.INFO if old_stage != new_stage else logging.DEBUG
            tip = moved.tip_height
            event(log, level, "exit_state", vtxo=e.vtxo_id, old=old_stage, new=new_stage, tip=tip)
            e.state = moved
        e.stored_error = error
