"""Repository of claim candidates: every signed claim tx, kept so that whichever confirms is found."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.store.db import in_chunks, insert_new, require_fenced
from exitd.store.exits import now
from exitd.store.models import ClaimTxRow


@dataclass(frozen=True)
class StoredClaim:
    """A signed claim candidate as stored (exitd/store/models.py, ClaimTxRow, says what each field is)."""

    txid: str
    first_txid: str
    seq: int
    raw: bytes
    fee: int
    vsize: int
    fee_rate: int
    signed_height: int
    refused_height: int | None


async def insert_claim(session: AsyncSession, claim: StoredClaim) -> None:
    """Store a new candidate; one stored already is left as it is (signing is deterministic: a claim of
    the same exits to the same place at the same rate and tip is the same tx). A spending write: only in a
    fenced session."""
    require_fenced(session)
    table = cast(Table, ClaimTxRow.__table__)
    await session.execute(insert_new(session, table), [{**vars(claim), "created_at": now()}])


async def set_claim_refused(session: AsyncSession, txid: str, height: int) -> None:
    """The node refused this candidate for its fee at `height`: it is never sent again as it is."""
    await session.execute(update(ClaimTxRow).where(ClaimTxRow.txid == txid).values(refused_height=height))


async def load_claims(session: AsyncSession, txids: Sequence[str]) -> list[StoredClaim]:
    """Every candidate of the claims these txids are candidates of, each claim's in the order they were
    signed (a txid no claim of exitd's has is someone else's spend: nothing is found for it)."""
    t = ClaimTxRow
    query = select(
        t.txid, t.first_txid, t.seq, t.raw, t.fee, t.vsize, t.fee_rate, t.signed_height, t.refused_height
    ).order_by(t.first_txid, t.seq)
    claims = []
    for chunk in in_chunks(list(dict.fromkeys(txids))):
        firsts = select(t.first_txid).where(t.txid.in_(chunk))
        claims += [StoredClaim(*row) for row in await session.execute(query.where(t.first_txid.in_(firsts)))]
    return claims
