"""Repository of exits, their shared txs and the CPFP children of those txs."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, case, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.store.db import execute_in, in_chunks, insert_new, select_in
from exitd.store.models import Base, ExitChildRow, ExitRow, ExitTxLinkRow, ExitTxRow


@dataclass(frozen=True)
class StoredExit:
    """An exit as stored. Its state and error are the engine's records (exitd/engine/records.py): JSON text
    the store moves around (a state change appends the old state to the history) but does not read."""

    vtxo_id: str
    state: str
    error: str | None
    started_by: str
    created_at: int


async def load_exits(session: AsyncSession, kinds: Sequence[str] | None = None) -> list[StoredExit]:
    """The exits, without their histories (load_histories reads those)."""
    table = ExitRow
    query = select(table.vtxo_id, table.state, table.error, table.started_by, table.created_at)
    query = query.order_by(table.created_at, table.vtxo_id)
    if kinds is not None:
        query = query.where(table.state_kind.in_(list(kinds)))
    return [StoredExit(*row) for row in await session.execute(query)]


async def load_links(session: AsyncSession, vtxo_ids: Sequence[str] | None) -> dict[str, list[str]]:
    """vtxo id -> its exit txids, root first; of every exit when `vtxo_ids` is None. Plain rows, not ORM
    objects, and no id list for all: a new leader reads every link before it may act, and an object per
    row, or 100,000 ids sent back, cost most of that time."""
    links: dict[str, list[str]] = {}
    table = ExitTxLinkRow
    query = select(table.vtxo_id, table.txid).order_by(table.level)
    for vtxo_id, txid in await execute_in(session, query, table.vtxo_id, vtxo_ids):
        links.setdefault(vtxo_id, []).append(txid)
    return links


@dataclass(frozen=True)
class StoredExitTx:
    """A signed exit tx, stored once however many exits share it."""

    txid: str
    raw: bytes
    vsize: int
    # The tx it spends: the previous level, or the on-chain chain anchor for level 0.
    input_txid: str
    anchor_vout: int


@dataclass(frozen=True)
class StoredChild:
    """A CPFP child of an exit tx as stored; `source` and `status` are the engine's enum values."""

    txid: str
    parent_txid: str
    raw: bytes
    fee: int
    vsize: int
    package_rate: int
    source: str
    status: str
    block_height: int | None
    block_hash: str | None


async def load_exit_txs(session: AsyncSession, txids: Sequence[str] | None) -> list[StoredExitTx]:
    """These exit txs, or (None) those of any exit; as plain rows (see load_links)."""
    table = ExitTxRow
    query = select(table.txid, table.raw, table.vsize, table.input_txid, table.anchor_vout)
    if txids is None:
        query = query.where(table.txid.in_(select(ExitTxLinkRow.txid)))
    return [StoredExitTx(*row) for row in await execute_in(session, query, table.txid, txids)]


async def load_children(session: AsyncSession, parent_txids: Sequence[str] | None) -> list[StoredChild]:
    """The children of these txs, or (None) of any exit's txs, each tx's in the order they were made."""
    query = select(ExitChildRow).order_by(ExitChildRow.created_at, ExitChildRow.txid)
    if parent_txids is None:
        query = query.where(ExitChildRow.parent_txid.in_(select(ExitTxLinkRow.txid)))
    rows = [row[0] for row in await execute_in(session, query, ExitChildRow.parent_txid, parent_txids)]
    return [
        StoredChild(
            r.txid,
            r.parent_txid,
            r.raw,
            r.fee,
            r.vsize,
            r.package_rate,
            r.source,
            r.status,
            r.block_height,
            r.block_hash,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ChildState:
    """What may change of a stored child (store_children): its status and block."""

    txid: str
    parent_txid: str
    status: str
    block_height: int | None
    block_hash: str | None


async def load_child_states(session: AsyncSession) -> list[ChildState]:
    """The status and block of every child of any exit's txs, in load_children's order, without the rest
    (a child's tx, fee and size never change once stored): what a refresh of the exits reads of them."""
    table = ExitChildRow
    query = select(table.txid, table.parent_txid, table.status, table.block_height, table.block_hash)
    query = query.where(table.parent_txid.in_(select(ExitTxLinkRow.txid)))
    query = query.order_by(table.created_at, table.txid)
    return [ChildState(*row) for row in await session.execute(query)]


@dataclass(frozen=True)
class ExitUpdate:
    """An exit's row as a cycle leaves it: its error always, its state when it changed (the state it
    leaves then goes to its history)."""

    vtxo_id: str
    error: str | None
    state: str | None = None
    state_kind: str | None = None


async def update_exits(session: AsyncSession, updates: Sequence[ExitUpdate]) -> None:
    """Every update in two executemany statements (state changes, then error-only ones): a cycle at a
    thousand exits changes most of them, and one ORM load and flush per row cost seconds. The database
    moves the stored state to the end of the history itself (SET reads the row as it was), so no history
    is held in memory, encoded again whole, or the old state encoded twice."""
    table = _table(ExitRow)
    stamp = now()
    changed = [
        {
            "b_id": u.vtxo_id,
            "b_error": u.error,
            "b_state": u.state,
            "b_kind": u.state_kind,
            "b_at": stamp,
        }
        for u in updates
        if u.state is not None
    ]
    if changed:
        await session.execute(
            update(table)
            .where(table.c.vtxo_id == bindparam("b_id"))
            .values(
                error=bindparam("b_error"),
                state=bindparam("b_state"),
                state_kind=bindparam("b_kind"),
                history=_appended(table.c.history, table.c.state),
                updated_at=bindparam("b_at"),
            ),
            changed,
        )
    errors = [{"vtxo_id": u.vtxo_id, "error": u.error} for u in updates if u.state is None]
    if errors:
        await session.execute(update(ExitRow), errors)


def _appended(history: ColumnElement[str], item: ColumnElement[str]) -> ColumnElement[str]:
    """The JSON array text `history` with the JSON text `item` appended, as text operations the same on
    SQLite and PostgreSQL (neither's JSON functions exist in the other)."""
    without_bracket = func.substr(history, 1, func.length(history) - 1)
    return case((history == "[]", "[" + item + "]"), else_=without_bracket + "," + item + "]")


async def load_histories(session: AsyncSession, vtxo_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Each exit's earlier states (the engine's records, parsed), oldest first."""
    histories: dict[str, list[Any]] = {}
    for chunk in in_chunks(vtxo_ids):
        result = await session.execute(
            select(ExitRow.vtxo_id, ExitRow.history).where(ExitRow.vtxo_id.in_(chunk))
        )
        histories.update((vtxo_id, json.loads(history)) for vtxo_id, history in result)
    return histories


async def store_children(session: AsyncSession, children: Sequence[StoredChild]) -> None:
    """New children stored; of known ones, only what changes: the status and the block."""
    known = set(
        await select_in(session, select(ExitChildRow.txid), ExitChildRow.txid, [c.txid for c in children])
    )
    new = [{**vars(c), "created_at": now()} for c in children if c.txid not in known]
    if new:
        await session.execute(insert(_table(ExitChildRow)), new)
    changed = [
        {"b_txid": c.txid, "b_status": c.status, "b_height": c.block_height, "b_hash": c.block_hash}
        for c in children
        if c.txid in known
    ]
    if changed:
        table = _table(ExitChildRow)
        await session.execute(
            update(table)
            .where(table.c.txid == bindparam("b_txid"))
            .values(
                status=bindparam("b_status"),
                block_height=bindparam("b_height"),
                block_hash=bindparam("b_hash"),
            ),
            changed,
        )


@dataclass(frozen=True)
class ExitStart:
    """A new exit: its VTXO and its txids, root first."""

    vtxo_id: str
    txids: tuple[str, ...]


async def insert_exit_txs(session: AsyncSession, txs: Sequence[StoredExitTx]) -> None:
    """Exit txs not stored yet: a tree's shared ancestors often are."""
    if txs:
        await session.execute(insert_new(session, _table(ExitTxRow)), [vars(t) for t in txs])


async def start_exits(
    session: AsyncSession,
    starts: Sequence[ExitStart],
    restarted: Collection[str],
    state: str,
    state_kind: str,
    started_by: str,
    stamp: int,
) -> None:
    """The rows of new exits and their links, as plain executemany statements: ORM objects for the tens
    of thousands of rows of a large start cost hundreds of MB. An exit `restarted` (canceled before) gets
    its row reset and its links replaced."""
    fields = {"state": state, "state_kind": state_kind, "error": None, "started_by": started_by}
    new = [
        {"vtxo_id": s.vtxo_id, "history": "[]", "created_at": stamp, "updated_at": stamp, **fields}
        for s in starts
        if s.vtxo_id not in restarted
    ]
    if new:
        await session.execute(insert(_table(ExitRow)), new)
    for chunk in in_chunks(list(restarted)):
        await session.execute(
            update(ExitRow).where(ExitRow.vtxo_id.in_(chunk)).values(history="[]", updated_at=stamp, **fields)
        )
        await session.execute(delete(ExitTxLinkRow).where(ExitTxLinkRow.vtxo_id.in_(chunk)))
    links = [
        {"vtxo_id": s.vtxo_id, "level": level, "txid": txid}
        for s in starts
        for level, txid in enumerate(s.txids)
    ]
    if links:
        await session.execute(insert(_table(ExitTxLinkRow)), links)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def now() -> int:
    return int(time.time())
