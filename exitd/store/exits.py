"""Repository of exits, their shared txs and the CPFP children of those txs."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from exitd.store.models import ExitChildRow, ExitRow, ExitTxLinkRow, ExitTxRow

CHILD_LIVE_STATUSES = ("stored", "broadcast", "confirmed")


async def load_exits(session: AsyncSession, kinds: Sequence[str] | None = None) -> list[ExitRow]:
    """The exits, without their histories (load_histories reads those)."""
    query = select(ExitRow).options(defer(ExitRow.history)).order_by(ExitRow.created_at, ExitRow.vtxo_id)
    if kinds is not None:
        query = query.where(ExitRow.state_kind.in_(list(kinds)))
    return list((await session.execute(query)).scalars())


async def load_links(session: AsyncSession, vtxo_ids: Sequence[str]) -> dict[str, list[str]]:
    """vtxo id -> its exit txids, root first."""
    rows = await session.execute(
        select(ExitTxLinkRow).where(ExitTxLinkRow.vtxo_id.in_(list(vtxo_ids))).order_by(ExitTxLinkRow.level)
    )
    links: dict[str, list[str]] = {}
    for link in rows.scalars():
        links.setdefault(link.vtxo_id, []).append(link.txid)
    return links


async def load_exit_txs(session: AsyncSession, txids: Sequence[str]) -> list[ExitTxRow]:
    return list((await session.execute(select(ExitTxRow).where(ExitTxRow.txid.in_(list(txids))))).scalars())


async def load_children(session: AsyncSession, parent_txids: Sequence[str]) -> list[ExitChildRow]:
    query = (
        select(ExitChildRow)
        .where(ExitChildRow.parent_txid.in_(list(parent_txids)))
        .order_by(ExitChildRow.created_at, ExitChildRow.txid)
    )
    return list((await session.execute(query)).scalars())


@dataclass(frozen=True)
class ExitUpdate:
    """An exit's row as a cycle leaves it: its error always, its state and history when they changed."""

    vtxo_id: str
    error: str | None
    state: str | None = None
    state_kind: str | None = None
    # The state it leaves (JSON), appended to its history.
    previous: str | None = None


async def update_exits(session: AsyncSession, updates: Sequence[ExitUpdate]) -> None:
    """Every update in two executemany statements (state changes, then error-only ones): a cycle at a
    thousand exits changes most of them, and one ORM load and flush per row cost seconds. SQLite appends
    the previous state to the history itself (json_insert at '$[#]'), so the history is never held in
    memory nor encoded again whole."""
    table = cast(Table, ExitRow.__table__)
    stamp = now()
    changed = [
        {
            "b_id": u.vtxo_id,
            "b_error": u.error,
            "b_state": u.state,
            "b_kind": u.state_kind,
            "b_previous": u.previous,
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
                history=func.json_insert(table.c.history, "$[#]", func.json(bindparam("b_previous"))),
                updated_at=bindparam("b_at"),
            ),
            changed,
        )
    errors = [{"vtxo_id": u.vtxo_id, "error": u.error} for u in updates if u.state is None]
    if errors:
        await session.execute(update(ExitRow), errors)


async def load_histories(session: AsyncSession, vtxo_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Each exit's earlier states (barkd's JSON), oldest first."""
    histories: dict[str, list[Any]] = {}
    for chunk in _chunks(vtxo_ids):
        result = await session.execute(
            select(ExitRow.vtxo_id, ExitRow.history).where(ExitRow.vtxo_id.in_(chunk))
        )
        histories.update((vtxo_id, json.loads(history)) for vtxo_id, history in result)
    return histories


async def get_children(session: AsyncSession, txids: Sequence[str]) -> dict[str, ExitChildRow]:
    rows = await session.execute(select(ExitChildRow).where(ExitChildRow.txid.in_(list(txids))))
    return {row.txid: row for row in rows.scalars()}


async def get_exits(session: AsyncSession, vtxo_ids: Sequence[str]) -> dict[str, ExitRow]:
    rows: dict[str, ExitRow] = {}
    for chunk in _chunks(vtxo_ids):
        result = await session.execute(select(ExitRow).where(ExitRow.vtxo_id.in_(chunk)))
        rows.update((row.vtxo_id, row) for row in result.scalars())
    return rows


async def replace_links(session: AsyncSession, links: Mapping[str, Sequence[str]]) -> None:
    """Each exit's txids (vtxo id -> txids, root first), instead of what it had."""
    for chunk in _chunks(list(links)):
        await session.execute(delete(ExitTxLinkRow).where(ExitTxLinkRow.vtxo_id.in_(chunk)))
    session.add_all(
        ExitTxLinkRow(vtxo_id=vtxo_id, level=level, txid=txid)
        for vtxo_id, txids in links.items()
        for level, txid in enumerate(txids)
    )


async def add_missing_exit_txs(session: AsyncSession, rows: Sequence[ExitTxRow]) -> None:
    """Store the exit txs not stored yet (those of a tree's shared ancestors often are)."""
    stored: set[str] = set()
    for chunk in _chunks([r.txid for r in rows]):
        stored.update(
            (await session.execute(select(ExitTxRow.txid).where(ExitTxRow.txid.in_(chunk)))).scalars()
        )
    session.add_all(r for r in rows if r.txid not in stored)


# SQLite binds at most 32,766 parameters in one statement: long id lists are asked in parts.
IN_CHUNK = 10_000


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + IN_CHUNK]) for i in range(0, len(ids), IN_CHUNK)]


def now() -> int:
    return int(time.time())
