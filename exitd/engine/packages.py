"""Paying for exit txs: CPFP children built and stored, then packages submitted, then their answers kept.

Each step ends before the next starts, whatever the number of packages: the new children are built and
stored with their coin reservations in one committed transaction, every package is submitted in one round
trip, and every answer is recorded in one transaction. So a child is never broadcast unless stored, and a
crash at any point leaves either nothing or a stored package the next cycle re-broadcasts or finds already
in the mempool.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from exitd.chain.broadcast import PackageOutcome, PackageResult, submit_packages
from exitd.chain.fees import RelayPolicy
from exitd.chain.rpc import BitcoinRpc, RpcError
from exitd.engine.errors import (
    ExitError,
    ExitPackageBroadcastFailure,
    InsufficientConfirmedFunds,
    InternalError,
)
from exitd.engine.model import ChildRecord, ChildSource, ChildStatus, EngineCounters, PackageWork, set_error
from exitd.engine.persist import as_stored, save_children
from exitd.engine.states import ExitTxStatus, TxStatusKind, WalletOrigin
from exitd.engine.transitions import Action, ActionKind
from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.exits import store_children
from exitd.wallet.builder import Replacing
from exitd.wallet.errors import InsufficientFunds
from exitd.wallet.onchain import CpfpChild, CpfpRequest
from exitd.wallet.planner import FundingOutlook

log = get_logger("engine")

CrashHook = Callable[[str], Awaitable[None]]


class CpfpFunder(Protocol):
    """The on-chain wallet as the engine uses it (exitd.wallet.onchain)."""

    async def build_cpfp_children(
        self, session: AsyncSession, requests: Sequence[CpfpRequest]
    ) -> list[CpfpChild | InsufficientFunds]: ...

    async def release_reservations(self, session: AsyncSession, spending_txid: str) -> None: ...


@dataclass(frozen=True)
class ChildTerms:
    """What a cycle's children are built under: the node's relay policy (a replacement must beat the
    package it replaces by its increment), the coin the funding plan meant for each exit tx, and the
    plan's outlook (a split on its way is not a wallet too poor)."""

    relay: RelayPolicy
    floors: Mapping[str, int]
    outlook: FundingOutlook | None


class PackageDesk:
    def __init__(
        self,
        store: Store,
        rpc: BitcoinRpc,
        wallet: CpfpFunder | None,
        counters: EngineCounters,
        crash_hook: CrashHook | None = None,
    ) -> None:
        self.store = store
        self.rpc = rpc
        self.wallet = wallet
        self.counters = counters
        # Test-only crash points (fault injection); None in production.
        self.crash_hook = crash_hook

    async def crash_point(self, name: str) -> None:
        if self.crash_hook is not None:
            await self.crash_hook(name)

    async def act(self, work: Sequence[PackageWork], terms: ChildTerms) -> None:
        """Build what lacks a child, then submit every package that has one and record the answers."""
        for w in work:
            if w.action.kind is ActionKind.BROADCAST:
                assert w.action.child_txid is not None
                w.child = w.tracked.children[w.action.child_txid]
        await self._build_children([w for w in work if w.child is None], terms)
        ready = [w for w in work if w.child is not None]
        if not ready:
            return
        await self.crash_point("after_child_stored")
        results = await submit_packages(self.rpc, [[w.tracked.raw, w.child.raw] for w in ready if w.child])
        await self.crash_point("after_submit")
        await self._record_broadcasts(ready, results)

    async def _build_children(self, work: Sequence[PackageWork], terms: ChildTerms) -> None:
        if not work:
            return
        if self.wallet is None:
            for w in work:
                set_error(w.sharers, InternalError("no on-chain wallet to fund CPFP children"))
            return
        requests = [
            CpfpRequest(
                w.tracked.tx,
                w.tracked.txid,
                w.rate,
                terms.floors.get(w.tracked.txid, 0),
                _replacing(w.action, terms.relay),
            )
            for w in work
        ]
        try:
            async with self.store.session(fenced=True) as session:
                built = await self.wallet.build_cpfp_children(session, requests)
                for w, result in zip(work, built, strict=True):
                    if isinstance(result, CpfpChild):
                        w.child = _stored_child(w, result)
                    else:
                        _too_poor(w, result, terms.outlook)
                await store_children(session, [as_stored(w.child) for w in work if w.child])
        except (ExitError, RpcError) as e:
            error = e if isinstance(e, ExitError) else InternalError(str(e))
            for w in work:
                set_error(w.sharers, error)
            return
        for w in work:
            if w.child is not None:
                w.tracked.children[w.child.txid] = w.child
                event(
                    log,
                    logging.INFO,
                    "child_stored",
                    txid=w.tracked.txid,
                    child=w.child.txid,
                    fee=w.child.fee,
                    rate=w.child.package_rate,
                )

    async def _record_broadcasts(
        self, ready: Sequence[PackageWork], results: Sequence[PackageResult]
    ) -> None:
        """Each package's answer: the child broadcast (and the children it replaced), a refused replacement
        kept for a later try, or the child abandoned; saved together."""
        changed: list[ChildRecord] = []
        release: list[ChildRecord] = []
        for w, result in zip(ready, results, strict=True):
            child, tracked = w.child, w.tracked
            assert child is not None
            if result.in_mempool:
                losers = self._accepted(w, child)
                changed += [child, *losers]
                release += losers
            elif result.outcome is PackageOutcome.NOT_ANSWERED:
                # Kept as stored: the next snapshot shows whether it got in, else it is sent again.
                event(log, logging.WARNING, "package_unanswered", txid=tracked.txid, child=child.txid)
                set_error(w.sharers, ExitPackageBroadcastFailure(tracked.txid, result.message))
            elif result.outcome is PackageOutcome.REPLACEMENT_FEE_TOO_LOW:
                event(
                    log,
                    logging.INFO,
                    "replacement_refused",
                    txid=tracked.txid,
                    child=child.txid,
                    error=result.message,
                )
            else:
                # The child can never be valid (a funding coin spent elsewhere, or rejected): drop it.
                child.status = ChildStatus.ABANDONED
                changed.append(child)
                release.append(child)
                event(
                    log,
                    logging.WARNING,
                    "package_rejected",
                    txid=tracked.txid,
                    child=child.txid,
                    error=result.message,
                )
                set_error(w.sharers, ExitPackageBroadcastFailure(tracked.txid, result.message))
        if changed:
            await save_children(self.store, self.wallet, changed, release=release)

    def _accepted(self, w: PackageWork, child: ChildRecord) -> list[ChildRecord]:
        """The package is in the mempool: the child is broadcast, our other children of the tx lost."""
        tracked = w.tracked
        losers = [c for c in tracked.children.values() if c.pending and c.txid != child.txid]
        self.counters.packages_broadcast += 1
        self.counters.cpfp_fees_paid += child.fee if child.status is not ChildStatus.BROADCAST else 0
        child.status = ChildStatus.BROADCAST
        for c in losers:
            c.status = ChildStatus.REPLACED
        event(
            log,
            logging.INFO,
            "package_broadcast",
            txid=tracked.txid,
            child=child.txid,
            fee=child.fee,
            rate=child.package_rate,
        )
        w.status = ExitTxStatus(
            TxStatusKind.BROADCAST_WITH_CPFP, child_txid=child.txid, origin=WalletOrigin()
        )
        return losers


def _replacing(action: Action, relay: RelayPolicy) -> Replacing | None:
    """What a child that replaces a package must beat: that package's fee plus the node's increment."""
    if action.min_package_fee is None:
        return None
    return Replacing(action.min_package_fee, relay.incremental)


def _stored_child(w: PackageWork, built: CpfpChild) -> ChildRecord:
    return ChildRecord(
        built.txid,
        w.tracked.txid,
        built.tx.serialize(),
        built.fee,
        built.vsize,
        built.package_rate,
        ChildSource.WALLET,
        ChildStatus.STORED,
    )


def _too_poor(w: PackageWork, e: InsufficientFunds, outlook: FundingOutlook | None) -> None:
    if outlook is not None and outlook.split_txid is not None and not outlook.missing:
        # Not poor: this child's coin is in the funding split, confirmed in the next block.
        event(log, logging.INFO, "child_awaits_split", txid=w.tracked.txid, split=outlook.split_txid)
        return
    set_error(w.sharers, InsufficientConfirmedFunds(e.needed, e.available))
    event(
        log, logging.WARNING, "wallet_too_poor", txid=w.tracked.txid, needed=e.needed, available=e.available
    )
