"""Repository of the on-chain wallet's coin reservations and funding splits."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.ark.encoding import OutPoint
from exitd.store.db import require_fenced
from exitd.store.exits import now
from exitd.store.models import CoinReservationRow, FundingSplitRow


async def list_reservations(session: AsyncSession) -> list[CoinReservationRow]:
    query = select(CoinReservationRow).order_by(CoinReservationRow.created_at, CoinReservationRow.txid)
    return list((await session.execute(query)).scalars())


async def reserved_outpoints(session: AsyncSession) -> set[OutPoint]:
    rows = await session.execute(select(CoinReservationRow.txid, CoinReservationRow.vout))
    return {OutPoint.of(txid, vout) for txid, vout in rows}


def add_reservations(
    session: AsyncSession, outpoints: Iterable[OutPoint], reserved_by: str, purpose: str
) -> None:
    require_fenced(session)
    created_at = now()
    for o in outpoints:
        session.add(
            CoinReservationRow(
                txid=o.txid_hex, vout=o.vout, reserved_by=reserved_by, purpose=purpose, created_at=created_at
            )
        )


async def delete_reservations_by(session: AsyncSession, reserved_by: str) -> int:
    """Forget what `reserved_by` held back; the number of coins freed."""
    freed = await session.execute(
        delete(CoinReservationRow)
        .where(CoinReservationRow.reserved_by == reserved_by)
        .returning(CoinReservationRow.txid)
    )
    return len(freed.all())


async def delete_reservations(session: AsyncSession, outpoints: Iterable[OutPoint]) -> None:
    keys = [(o.txid_hex, o.vout) for o in outpoints]
    if keys:
        await session.execute(
            delete(CoinReservationRow).where(
                tuple_(CoinReservationRow.txid, CoinReservationRow.vout).in_(keys)
            )
        )


def add_split(session: AsyncSession, txid: str, raw: bytes, fee: int, coins: int) -> None:
    require_fenced(session)
    session.add(FundingSplitRow(txid=txid, raw=raw, fee=fee, coins=coins, status="stored", created_at=now()))


async def unsettled_splits(session: AsyncSession) -> list[FundingSplitRow]:
    """Funding splits neither confirmed nor abandoned: stored, or broadcast and not yet in a block."""
    query = select(FundingSplitRow).where(FundingSplitRow.status.in_(("stored", "broadcast")))
    return list((await session.execute(query.order_by(FundingSplitRow.created_at))).scalars())


async def set_split_status(session: AsyncSession, txid: str, status: str) -> None:
    row = await session.get(FundingSplitRow, txid)
    assert row is not None
    row.status = status
