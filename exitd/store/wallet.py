"""Repository of the on-chain wallet's coin reservations and funding splits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.ark.encoding import OutPoint
from exitd.store.db import require_fenced
from exitd.store.exits import now
from exitd.store.models import CoinReservationRow, FundingSplitRow


@dataclass(frozen=True)
class Reservation:
    """A wallet coin (txid, vout) promised to the tx `reserved_by`, for `purpose` (cpfp | send)."""

    txid: str
    vout: int
    reserved_by: str
    purpose: str


@dataclass(frozen=True)
class StoredSplit:
    """A funding fan-out tx of the wallet: its fee, the coins it makes, and stored | broadcast | confirmed |
    abandoned."""

    txid: str
    raw: bytes
    fee: int
    coins: int
    status: str


async def list_reservations(session: AsyncSession) -> list[Reservation]:
    table = CoinReservationRow
    query = select(table.txid, table.vout, table.reserved_by, table.purpose)
    query = query.order_by(table.created_at, table.txid)
    return [Reservation(*row) for row in await session.execute(query)]


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


async def unsettled_splits(session: AsyncSession) -> list[StoredSplit]:
    """Funding splits neither confirmed nor abandoned: stored, or broadcast and not yet in a block."""
    table = FundingSplitRow
    query = select(table.txid, table.raw, table.fee, table.coins, table.status)
    query = query.where(table.status.in_(("stored", "broadcast"))).order_by(table.created_at)
    return [StoredSplit(*row) for row in await session.execute(query)]


async def set_split_status(session: AsyncSession, txid: str, status: str) -> None:
    await session.execute(update(FundingSplitRow).where(FundingSplitRow.txid == txid).values(status=status))
