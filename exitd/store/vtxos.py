"""Repository of imported VTXOs: it hands out StoredVtxo, never its rows. Its writes decide what exitd
exits, so on a shared database only the leader makes them, each in a fenced session (require_fenced)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.ark.policy import ClaimClause
from exitd.ark.vtxo import Vtxo, decode_vtxo
from exitd.store.db import execute_in, in_chunks, require_fenced, select_in
from exitd.store.models import VtxoRow


class VtxoState(StrEnum):
    """Where an imported VTXO stands for exitd."""

    SPENDABLE = "spendable"
    LOCKED = "locked"  # in an exit
    SPENT = "spent"  # claimed, spent by its source, or marked gone


@dataclass(frozen=True)
class StoredVtxo:
    """An imported VTXO and what the store keeps beside it. The facts of the VTXO the listings need are
    stored columns; the VTXO itself is decoded when first asked for (it was validated whole at import)."""

    vtxo_id: str
    encoded: bytes
    amount_sat: int
    expiry_height: int
    exit_delta: int
    exit_depth: int
    policy_type: str
    user_pubkey: str
    server_pubkey: str
    chain_anchor: str
    # Index i of bark's VTXO key m/350'/0'/i that owns user_pubkey; None while the wallet holds no such key.
    key_index: int | None
    state: VtxoState
    imported_at: int
    preimage: bytes | None
    source: str
    protect: bool
    seen_state: str | None
    seen_at: int | None
    gone_at: int | None

    @cached_property
    def vtxo(self) -> Vtxo:
        return decode_vtxo(self.encoded)

    @property
    def claim_clause(self) -> ClaimClause:
        return self.vtxo.claim_clause


def stored(row: VtxoRow) -> StoredVtxo:
    return StoredVtxo(
        vtxo_id=row.vtxo_id,
        encoded=row.encoded,
        amount_sat=row.amount_sat,
        expiry_height=row.expiry_height,
        exit_delta=row.exit_delta,
        exit_depth=row.exit_depth,
        policy_type=row.policy_type,
        user_pubkey=row.user_pubkey,
        server_pubkey=row.server_pubkey,
        chain_anchor=row.chain_anchor,
        key_index=row.key_index,
        state=VtxoState(row.state),
        imported_at=row.imported_at,
        preimage=row.preimage,
        source=row.source,
        protect=row.protect,
        seen_state=row.seen_state,
        seen_at=row.seen_at,
        gone_at=row.gone_at,
    )


async def get_vtxo(session: AsyncSession, vtxo_id: str) -> StoredVtxo | None:
    row = await session.get(VtxoRow, vtxo_id)
    return None if row is None else stored(row)


async def get_vtxos(session: AsyncSession, vtxo_ids: Sequence[str]) -> dict[str, StoredVtxo]:
    rows = await select_in(session, select(VtxoRow), VtxoRow.vtxo_id, vtxo_ids)
    return {row.vtxo_id: stored(row) for row in rows}


async def list_vtxos(session: AsyncSession, include_spent: bool = False) -> list[StoredVtxo]:
    query = select(VtxoRow).order_by(VtxoRow.imported_at, VtxoRow.vtxo_id)
    if not include_spent:
        query = query.where(VtxoRow.state != VtxoState.SPENT)
    return [stored(row) for row in (await session.execute(query)).scalars()]


async def add_vtxo(session: AsyncSession, vtxo: StoredVtxo) -> None:
    require_fenced(session)
    session.add(VtxoRow(**{f: getattr(vtxo, f) for f in STORED_COLUMNS}))
    await session.flush()


async def protect_vtxo(session: AsyncSession, vtxo_id: str) -> None:
    require_fenced(session)
    await session.execute(update(VtxoRow).where(VtxoRow.vtxo_id == vtxo_id).values(protect=True))


async def mark_vtxo_gone(session: AsyncSession, vtxo_id: str, stamp: int) -> None:
    """The user says the VTXO is no longer theirs: spent, and when they said so."""
    require_fenced(session)
    query = update(VtxoRow).where(VtxoRow.vtxo_id == vtxo_id, VtxoRow.gone_at.is_(None))
    await session.execute(query.values(gone_at=stamp, state=VtxoState.SPENT.value))


async def vtxo_terms(
    session: AsyncSession, vtxo_ids: Sequence[str] | None = None
) -> dict[str, tuple[int, int]]:
    """vtxo id -> (amount in sat, expiry height) of these VTXOs, or (None) of every VTXO: what loading the
    exits needs of them, as plain rows (an ORM object with its encoding per VTXO made a new leader's load
    of 100,000 slow)."""
    query = select(VtxoRow.vtxo_id, VtxoRow.amount_sat, VtxoRow.expiry_height)
    rows = await execute_in(session, query, VtxoRow.vtxo_id, vtxo_ids)
    return {vtxo_id: (amount, expiry) for vtxo_id, amount, expiry in rows}


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
    require_fenced(session)
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
    require_fenced(session)
    for chunk in in_chunks(vtxo_ids):
        await session.execute(update(VtxoRow).where(VtxoRow.vtxo_id.in_(chunk)).values(state=state))


async def amounts_by_state(session: AsyncSession) -> dict[str, int]:
    """Total amount of the VTXOs in each state."""
    rows = await session.execute(select(VtxoRow.state, func.sum(VtxoRow.amount_sat)).group_by(VtxoRow.state))
    return {state: int(total) for state, total in rows}


# StoredVtxo's fields, each a column of VtxoRow of the same name.
STORED_COLUMNS = tuple(StoredVtxo.__dataclass_fields__)
