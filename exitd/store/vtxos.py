"""Repository of imported VTXOs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.store.db import in_chunks, select_in
from exitd.store.models import VtxoRow


async def get_vtxo(session: AsyncSession, vtxo_id: str) -> VtxoRow | None:
    return await session.get(VtxoRow, vtxo_id)


async def get_vtxos(session: AsyncSession, vtxo_ids: Sequence[str]) -> dict[str, VtxoRow]:
    return {row.vtxo_id: row for row in await select_in(session, select(VtxoRow), VtxoRow.vtxo_id, vtxo_ids)}


async def list_vtxos(session: AsyncSession, include_spent: bool = False) -> list[VtxoRow]:
    query = select(VtxoRow).order_by(VtxoRow.imported_at, VtxoRow.vtxo_id)
    if not include_spent:
        query = query.where(VtxoRow.state != "spent")
    return list((await session.execute(query)).scalars())


async def vtxo_ids_in_state(session: AsyncSession, state: str) -> list[str]:
    query = select(VtxoRow.vtxo_id).where(VtxoRow.state == state)
    query = query.order_by(VtxoRow.imported_at, VtxoRow.vtxo_id)
    return list((await session.execute(query)).scalars())


async def guarded_vtxo_ids(session: AsyncSession, protect_imports: bool) -> list[str]:
    """Spendable VTXOs the guard may exit: those a source holds as the user's (barkd lists them spendable
    or locked), and those the user asked it to protect (each, or every import with `protect_imports`)."""
    vouched = and_(VtxoRow.source == "barkd", VtxoRow.seen_state.in_(VOUCHED_STATES))
    asked = VtxoRow.protect | (VtxoRow.source == "import") if protect_imports else VtxoRow.protect
    query = select(VtxoRow.vtxo_id).where(
        VtxoRow.state == "spendable", VtxoRow.gone_at.is_(None), or_(vouched, asked)
    )
    return list((await session.execute(query.order_by(VtxoRow.imported_at, VtxoRow.vtxo_id))).scalars())


# barkd's states of a VTXO that is still the user's.
VOUCHED_STATES = ("spendable", "locked")


@dataclass(frozen=True)
class KnownVtxo:
    """What exitd holds of a VTXO, as a sync with its source compares it."""

    vtxo_id: str
    state: str
    source: str
    seen_state: str | None


async def known_vtxos(session: AsyncSession) -> dict[str, KnownVtxo]:
    columns = (VtxoRow.vtxo_id, VtxoRow.state, VtxoRow.source, VtxoRow.seen_state)
    return {r[0]: KnownVtxo(*r) for r in await session.execute(select(*columns))}


async def record_seen(session: AsyncSession, seen: Mapping[str, str], stamp: int, source: str) -> None:
    """What `source` says of each VTXO now; a VTXO it lists is its from now on."""
    by_state: dict[str, list[str]] = {}
    for vtxo_id, state in seen.items():
        by_state.setdefault(state, []).append(vtxo_id)
    for state, ids in by_state.items():
        for chunk in in_chunks(ids):
            await session.execute(
                update(VtxoRow)
                .where(VtxoRow.vtxo_id.in_(chunk))
                .values(seen_state=state, seen_at=stamp, source=source)
            )


async def set_vtxos_state(session: AsyncSession, vtxo_ids: Sequence[str], state: str) -> None:
    for chunk in in_chunks(vtxo_ids):
        await session.execute(update(VtxoRow).where(VtxoRow.vtxo_id.in_(chunk)).values(state=state))


async def amounts_by_state(session: AsyncSession) -> dict[str, int]:
    """Total amount of the VTXOs in each state."""
    rows = await session.execute(select(VtxoRow.state, func.sum(VtxoRow.amount_sat)).group_by(VtxoRow.state))
    return {state: int(total) for state, total in rows}
