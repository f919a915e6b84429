"""Funding ahead: the wallet's coins made into the coins the next blocks' CPFP children need.

Every cycle, before any child chooses its coin, the engine hands the exit txs in flight to the wallet's
ensure_funding. This plans them (exitd/wallet/planner.py) and makes the split that saves blocks, if any:
stored with its inputs' reservations, then broadcast. One split at a time: while one is unconfirmed, its
outputs count as arriving and no other is made. Stored splits are brought in line with bitcoind each time,
so a split stored and then killed before its broadcast is broadcast after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from bitcoin.core import b2lx
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.ark.encoding import TxOut
from exitd.chain.broadcast import send_raw_transaction
from exitd.chain.rpc import BitcoinRpc, RpcError, RpcInvalidAddressOrKey
from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.wallet import (
    add_split,
    delete_reservations_by,
    list_reservations,
    set_split_status,
    unsettled_splits,
)
from exitd.wallet.builder import Draft, sign
from exitd.wallet.change import ChangeScripts
from exitd.wallet.coinselection import Coin
from exitd.wallet.planner import FundingOutlook, FundingPlan, PlannedTx, plan_funding
from exitd.wallet.watchonly import WatchOnlyWallet

log = get_logger("wallet")

# Reservations of funding splits: kept until the split confirms or is abandoned.
SPLIT_PURPOSE = "split"


class CoinKeeper(Protocol):
    """What funding ahead needs of the wallet (OnchainWallet): its coins no stored transaction promised
    elsewhere, and their reservations."""

    async def unpromised(
        self, session: AsyncSession, hand_on: bool = False, take: bool = False
    ) -> tuple[list[Coin], int]: ...

    def reserve(self, session: AsyncSession, coins: Iterable[Coin], txid: str, purpose: str) -> None: ...

    async def release_reservations(self, session: AsyncSession, spending_txid: str) -> None: ...


class FundingAhead:
    def __init__(
        self,
        rpc: BitcoinRpc,
        store: Store,
        watch_only: WatchOnlyWallet,
        change: ChangeScripts,
        coins: CoinKeeper,
    ) -> None:
        self.rpc = rpc
        self.store = store
        self.watch_only = watch_only
        self.change = change
        self.coins = coins
        # The last funding plan and what it was made from (see _plan).
        self._last_plan: tuple[tuple[object, ...], FundingPlan] | None = None

    async def ensure(self, txs: Sequence[PlannedTx], split_rate: int) -> FundingPlan:
        """The plan for `txs`, and its split made (at `split_rate`) when it saves blocks and no other is
        unconfirmed. The caller holds the wallet's coin lock."""
        pending = await self._settle_splits()
        plan = await self._plan(txs, split_rate, may_split=pending is None)
        if plan.split is not None:
            pending = await self._split(plan.split)
        return replace(plan, outlook=replace(plan.outlook, split_txid=pending))

    async def outlook(self, txs: Sequence[PlannedTx], split_rate: int) -> FundingOutlook:
        """The plan for `txs` as `ensure` would make it (with the split it would make), making nothing."""
        async with self.store.session() as session:
            pending = [row.txid for row in await unsettled_splits(session)]
        plan = await self._plan(txs, split_rate, may_split=not pending)
        return replace(plan.outlook, split_txid=pending[0] if pending else None)

    async def _plan(self, txs: Sequence[PlannedTx], split_rate: int, may_split: bool) -> FundingPlan:
        """The funding plan with the wallet's unpromised coins: confirmed ones now, ours in the mempool
        from the next block. Ours: what bitcoind trusts (a split's outputs, a send's change), and the change
        of the txs coins were reserved for (a CPFP child, whose anchor input bitcoind does not trust)."""
        async with self.store.session() as session:
            coins, height = await self.coins.unpromised(session, hand_on=True)
            spenders = {row.reserved_by for row in await list_reservations(session)}
        confirmed = [c for c in coins if c.confirmed]
        arriving = [
            c.value for c in coins if not c.confirmed and (c.trusted or c.outpoint.txid_hex in spenders)
        ]
        # Every cycle plans, most of them (no new block, no coin moved) for what the last one planned:
        # comparing is a few ms at a thousand exits, planning tens.
        key = (tuple(txs), tuple(confirmed), tuple(arriving), split_rate, height, may_split)
        if self._last_plan is None or self._last_plan[0] != key:
            self._last_plan = (key, plan_funding(txs, confirmed, arriving, split_rate, height, may_split))
        return self._last_plan[1]

    async def _split(self, draft: Draft) -> str | None:
        """Make the planned split: a fresh change script for each output (the plan sized them with one of
        the same size), signed, stored with its inputs' reservations, then broadcast."""
        scripts = await self.change.take(len(draft.outputs))
        outputs = tuple(TxOut(o.value, s) for o, s in zip(draft.outputs, scripts, strict=True))
        tx = sign(replace(draft, outputs=outputs), self.watch_only.account)
        txid = b2lx(tx.GetTxid())
        async with self.store.session(fenced=True) as session:
            self.coins.reserve(session, draft.coins, txid, SPLIT_PURPOSE)
            add_split(session, txid, tx.serialize(), draft.fee, len(outputs))
        event(log, logging.INFO, "split_stored", txid=txid, coins=len(outputs), fee=draft.fee)
        return await self._broadcast_split(txid, tx.serialize())

    async def _broadcast_split(self, txid: str, raw: bytes) -> str | None:
        """Broadcast a stored split: its txid once bitcoind has it; None if refused (its coins are freed)."""
        try:
            await send_raw_transaction(self.rpc, raw)
        except RpcError as e:
            async with self.store.session() as session:
                await set_split_status(session, txid, "abandoned")
                await self.coins.release_reservations(session, txid)
            event(log, logging.WARNING, "split_rejected", txid=txid, error=str(e))
            return None
        async with self.store.session() as session:
            await set_split_status(session, txid, "broadcast")
        event(log, logging.INFO, "split_broadcast", txid=txid)
        return txid

    async def _settle_splits(self) -> str | None:
        """Bring stored splits in line with bitcoind: confirmed, conflicted (abandoned, its coins freed), or
        unknown to it (stored, then killed before its broadcast: broadcast now). The txid of the one still
        unconfirmed, if any."""
        async with self.store.session() as session:
            rows = await unsettled_splits(session)
        answers = await self.watch_only.batch([("gettransaction", [row.txid]) for row in rows])
        unconfirmed = None
        for row, answer in zip(rows, answers, strict=True):
            if isinstance(answer, RpcInvalidAddressOrKey):
                unconfirmed = await self._broadcast_split(row.txid, row.raw) or unconfirmed
            elif isinstance(answer, RpcError):
                raise answer
            elif int(answer["confirmations"]) > 0:
                async with self.store.session() as session:
                    await set_split_status(session, row.txid, "confirmed")
                    await delete_reservations_by(session, row.txid)
                event(log, logging.INFO, "split_confirmed", txid=row.txid)
            elif int(answer["confirmations"]) < 0:
                async with self.store.session() as session:
                    await set_split_status(session, row.txid, "abandoned")
                    await self.coins.release_reservations(session, row.txid)
                event(log, logging.WARNING, "split_conflicted", txid=row.txid)
            else:
                unconfirmed = row.txid
        return unconfirmed
