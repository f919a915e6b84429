"""Repository of imported VTXOs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
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


async def set_vtxos_state(session: AsyncSession, vtxo_ids: Sequence[str], state: str) -> None:
    for chunk in in_chunks(vtxo_ids):
        await session.execute(update(VtxoRow).where(VtxoRow.vtxo_id.in_(chunk)).values(state=state))


async def amounts_by_state(session: AsyncSession) -> dict[str, int]:
    """Total amount of the VTXOs in each state."""
    rows = await session.execute(select(VtxoRow.state, func.sum(VtxoRow.amount_sat)).group_by(VtxoRow.state))
    return {state: int(total) for state, total in rows}
