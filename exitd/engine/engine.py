"""The exit engine: starts exits, runs the progress cycle (one at a time), claims and cancels.

A cycle: take one chain snapshot; learn what it says about our children; give every exit tx one status
(once per tx, however many exits share it) and carry out the resulting actions; then give every exit its
next state and persist the ones that really changed. Children are stored (with their coin reservations)
in a committed transaction before they are ever broadcast, so a crash at any point leaves either nothing
or a stored package the next cycle re-broadcasts or finds already in the mempool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa
from bitcoin.core import CTransaction, b2lx
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.ark.claim import ClaimSigner
from exitd.ark.encoding import OutPoint
from exitd.ark.exit_tx import ExitChain, build_exit_chain
from exitd.ark.policy import UserPolicy
from exitd.chain.broadcast import PackageOutcome, PackageResult, send_raw_transaction, submit_packages
from exitd.chain.fees import FeeEstimator, Market, RelayPolicy
from exitd.chain.rpc import BitcoinRpc, RpcError
from exitd.chain.view import BlockRef, ChainSnapshot, ChainView, TxState
from exitd.engine.claims import ClaimInput, build_claim_tx, claim_tx_vsize, tx_vsize
from exitd.engine.errors import (
    BlockRetrievalFailure,
    CannotCancelExit,
    ClaimMissingInputs,
    ClaimMissingSignableClause,
    DustLimit,
    ExitError,
    ExitPackageBroadcastFailure,
    FeeBudgetExceeded,
    InsufficientConfirmedFunds,
    InternalError,
    InvalidWalletState,
    NotExiting,
    TransactionRetrievalFailure,
    VtxoAlreadySpent,
    VtxoNotClaimable,
)
from exitd.engine.fee_policy import (
    CHILD_VSIZE_ESTIMATE,
    FeePolicy,
    RaisedRate,
    budget_capped_rate,
    deadline_rate,
    exit_fee_estimate,
    fee_budget,
    level_target,
)
from exitd.engine.records import decode_state, encode_error, encode_state, state_of
from exitd.engine.states import (
    VERIFY_INPUTS,
    BlockOrigin,
    ExitState,
    ExitStateKind,
    ExitTx,
    ExitTxOrigin,
    ExitTxStatus,
    MempoolOrigin,
    TxStatusKind,
    WalletOrigin,
)
from exitd.engine.transitions import (
    Action,
    ActionKind,
    Child,
    ExitFacts,
    TxFacts,
    claim_next,
    claimable_next,
    next_tx_status,
    processing_or_done,
)
from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.exits import (
    ExitStart,
    ExitUpdate,
    get_children,
    insert_exit_txs,
    load_children,
    load_exit_txs,
    load_exits,
    load_histories,
    load_links,
    now,
    start_exits,
    update_exits,
)
from exitd.store.models import ExitChildRow, VtxoRow
from exitd.store.vtxos import list_vtxos, set_vtxos_state
from exitd.wallet.builder import Replacing
from exitd.wallet.errors import InsufficientFunds, NoWallet
from exitd.wallet.onchain import CpfpChild, CpfpRequest
from exitd.wallet.planner import FundingOutlook, PlannedTx
from exitd.wallet.policy import dust_threshold
from exitd.wallet.vtxos import VtxoBook, spent_reason, vtxo_of

log = get_logger("engine")

# barkd's dust check on a VTXO before its exit starts: a P2TR output below this cannot be relayed.
P2TR_DUST = 330
# VTXOs a start reads and rebuilds the exit chains of between two looks at the event loop.
START_BATCH = 50
# A tx this deep is final enough: no more questions about it.
FINAL_DEPTH = 100


class CpfpFunder(Protocol):
    """The on-chain wallet as the engine uses it (exitd.wallet.onchain)."""

    async def build_cpfp_children(
        self, session: AsyncSession, requests: Sequence[CpfpRequest]
    ) -> list[CpfpChild | InsufficientFunds]: ...

    async def release_reservations(self, session: AsyncSession, spending_txid: str) -> None: ...


class Funding(Protocol):
    """The on-chain wallet's funding plan (exitd.wallet.planner) as the cycle drives it."""

    async def ensure_funding(self, txs: Sequence[PlannedTx]) -> FundingOutlook: ...


class CycleGuard(Protocol):
    """Guard mode (exitd.engine.guard) as the cycle sees it: more txids for the snapshot, and a look at
    the snapshot and the exits once the cycle is done."""

    async def watched_txids(self) -> Sequence[str]: ...

    async def after_cycle(self, snap: ChainSnapshot) -> None: ...


# The wallet's "not enough confirmed coins" error, whatever its class: it carries needed and available.
def check_relayable(vtxo_id: str, amount: int, chain: ExitChain) -> None:
    """bitcoind relays a zero-fee TRUC parent only with its P2A as the one dust output: any other output
    below its dust threshold (a sub-dust sibling in a tree, a dust VTXO) makes the tx unrelayable, so the
    exit could never complete. Refuse it at start rather than spend fees on its first levels."""
    if amount < P2TR_DUST:
        raise DustLimit(vtxo_id, amount, P2TR_DUST)
    for level, exit_tx in enumerate(chain.txs):
        for vout, out in enumerate(exit_tx.tx.vout):
            dust = dust_threshold(bytes(out.scriptPubKey))
            if vout != exit_tx.fee_anchor_index and out.nValue < dust:
                raise DustLimit(
                    vtxo_id,
                    out.nValue,
                    dust,
                    f"exit tx {level} of {vtxo_id} has output {vout} of {out.nValue} sat, below the dust "
                    f"limit of {dust}: bitcoind will not relay it, so this VTXO cannot be exited",
                )


def exit_chain_of(row: VtxoRow) -> ExitChain:
    """The exit chain of a stored VTXO that can be exited: finished, and every tx relayable."""
    vtxo = vtxo_of(row)
    if vtxo.is_unfinished:
        raise InvalidWalletState(
            f"VTXO {row.vtxo_id} is not finished (its leaf lacks a preimage or signature)"
        )
    chain = build_exit_chain(vtxo)
    check_relayable(row.vtxo_id, row.amount_sat, chain)
    return chain


@dataclass
class ChildRecord:
    txid: str
    parent_txid: str
    raw: bytes
    fee: int
    vsize: int
    package_rate: int
    source: str  # wallet | network
    status: str  # stored | broadcast | confirmed | replaced | abandoned
    block: BlockRef | None = None

    @property
    def pending(self) -> bool:
        return self.source == "wallet" and self.status in ("stored", "broadcast")

    def origin(self) -> ExitTxOrigin:
        if self.source == "wallet":
            return WalletOrigin(self.block)
        if self.block is not None:
            return BlockOrigin(self.block)
        return MempoolOrigin(self.package_rate, self.fee)

    def as_child(self) -> Child:
        return Child(self.txid, self.fee, self.package_rate, self.source == "wallet", self.block)


@dataclass
class TrackedTx:
    """An exit tx and what the engine knows of its children; shared by every exit that needs it."""

    txid: str
    raw: bytes
    vsize: int
    input_txid: str
    anchor_vout: int
    children: dict[str, ChildRecord] = field(default_factory=dict)

    @property
    def tx(self) -> CTransaction:
        return CTransaction.deserialize(self.raw)


@dataclass
class PackageWork:
    """An exit tx this cycle pays for or broadcasts: what to do, at what rate, for whom; the child once
    there is one, and the tx's status as the cycle leaves it."""

    tracked: TrackedTx
    action: Action
    rate: int
    sharers: list[LiveExit]
    status: ExitTxStatus
    child: ChildRecord | None = None


@dataclass
class LiveExit:
    vtxo_id: str
    amount: int
    expiry_height: int
    txids: list[str]
    state: ExitState
    started_by: str
    created_at: int
    error: ExitError | None = None
    claim_delay: int | None = None
    claim_locktime: int | None = None
    # The error as the store holds it (JSON): a cycle that changes neither it nor the state writes nothing.
    stored_error: str | None = None
    # The last fee_rate a request gave for this exit, when the node's floor stood above it.
    raised_rate: RaisedRate | None = None

    def levels_left(self, snap: ChainSnapshot) -> int:
        """Exit txs the snapshot does not show confirmed: the blocks this exit still needs at the least."""
        return sum(1 for txid in self.txids if not snap.is_confirmed(txid))

    @property
    def outpoint(self) -> tuple[str, int]:
        txid, _, vout = self.vtxo_id.partition(":")
        return txid, int(vout)


@dataclass(frozen=True)
class FeeEstimate:
    """barkd 0.6.0's EmergencyExitFeeEstimateResponse, in sat."""

    exit_broadcast_fee: int
    claim_fee: int
    fee_rate: int  # sat/kvB of the broadcast leg
    txs_to_broadcast: int
    fundable: bool
    # The exit txs in flight and those of the estimate, as the wallet's funding plan sees them.
    planned: tuple[PlannedTx, ...] = ()


@dataclass(frozen=True)
class ExitProgress:
    """An exit as a cycle left it: a report keeps the state and error of then, whatever later cycles do."""

    vtxo_id: str
    state: ExitState
    error: ExitError | None
    raised_rate: RaisedRate | None = None


@dataclass(frozen=True, eq=False)
class ProgressReport:
    """What one cycle did; shared by every caller of that cycle (eq=False: compared and hashed by
    identity, so that the API renders each report once)."""

    exits: tuple[ExitProgress, ...]
    done: bool
    claimable_height: int | None


class ExitEngine:
    def __init__(
        self,
        store: Store,
        rpc: BitcoinRpc,
        fees: FeeEstimator,
        vtxos: VtxoBook,
        wallet: CpfpFunder | None,
        policy: FeePolicy,
        network: str,
    ) -> None:
        self.store = store
        self.rpc = rpc
        self.view = ChainView(rpc)
        self.fees = fees
        self.vtxos = vtxos
        self.wallet = wallet
        self.policy = policy
        self.network = network
        self.exits: dict[str, LiveExit] = {}
        self.txs: dict[str, TrackedTx] = {}
        self.cycle_lock = asyncio.Lock()
        # Counts what held the cycle lock (cycles, starts, claims, cancels) and loads: whatever was computed
        # from the exits (a status listing) under one version still holds under it.
        self.version = 0
        # The cycle of each fee-rate override that waits for the lock: callers arriving meanwhile share it.
        self._next_cycle: dict[int | None, asyncio.Task[ProgressReport]] = {}
        self.wakeup = asyncio.Event()
        self.new_block = asyncio.Condition()
        self.cycles = 0
        self.last_tip: BlockRef | None = None
        # (exit txid, block hash) already searched for the tx's child.
        self._scanned: set[tuple[str, str]] = set()
        # Counters that /metrics reads (exitd/metrics.py); they only ever grow.
        self.packages_broadcast = 0
        self.cpfp_fees_paid = 0  # sat, of our children accepted into the mempool
        self.claim_fees_paid = 0  # sat
        self.cycle_errors = 0  # cycles that raised; every cycle ends in `cycles` or here
        self.cycle_seconds = 0.0
        # Cycles running now, and the most ever at once: 1 proves the single-flight (load tests read it).
        self.cycles_running = 0
        self.max_concurrent_cycles = 0
        # Test-only crash points (fault injection); empty in production.
        self.crash_hook: Callable[[str], Awaitable[None]] | None = None
        # Guard mode, set by the daemon; None: the cycle only advances exits.
        self.guard: CycleGuard | None = None
        # Funding ahead, set by the daemon (the wallet); None: children take whatever coins there are.
        self.funding: Funding | None = None
        # The exit txs in flight, as the last cycle planned their funding, and the wallet's outlook for them.
        self.planned: tuple[PlannedTx, ...] = ()
        self.funding_outlook: FundingOutlook | None = None

    @contextlib.asynccontextmanager
    async def _changing(self) -> AsyncIterator[None]:
        """Hold the cycle lock to change exits; the version moves on when done, changed or not."""
        async with self.cycle_lock:
            try:
                yield
            finally:
                self.version += 1

    # Loading.

    async def load(self) -> None:
        """Read every exit and its txs and children from the store into memory."""
        async with self.store.session() as session:
            rows = await load_exits(session)
            links = await load_links(session, [r.vtxo_id for r in rows])
            txids = sorted({t for ts in links.values() for t in ts})
            tx_rows = await load_exit_txs(session, txids)
            children = await load_children(session, txids)
            vtxo_rows = {r.vtxo_id: r for r in await list_vtxos(session, include_spent=True)}
        self.txs = {r.txid: TrackedTx(r.txid, r.raw, r.vsize, r.input_txid, r.anchor_vout) for r in tx_rows}
        for c in children:
            block = (
                BlockRef(c.block_height, c.block_hash)
                if c.block_height is not None and c.block_hash
                else None
            )
            self.txs[c.parent_txid].children[c.txid] = ChildRecord(
                c.txid, c.parent_txid, c.raw, c.fee, c.vsize, c.package_rate, c.source, c.status, block
            )
        self.exits = {}
        for row in rows:
            vrow = vtxo_rows[row.vtxo_id]
            self.exits[row.vtxo_id] = LiveExit(
                vtxo_id=row.vtxo_id,
                amount=vrow.amount_sat,
                expiry_height=vrow.expiry_height,
                txids=links.get(row.vtxo_id, []),
                state=decode_state(row.state),
                started_by=row.started_by,
                created_at=row.created_at,
                error=None,
                stored_error=row.error,
            )
        self.version += 1

    # Starting.

    async def start(self, vtxo_ids: Sequence[str] | None, started_by: str = "user") -> list[str]:
        """Start exits (all spendable VTXOs when `vtxo_ids` is None); running exits are left as they are.
        Given ids are all started or, when one cannot be exited, none is; of all, those that can be.

        One transaction for all: a session per exit made starting thousands take minutes. VTXOs are read
        START_BATCH at a time, each chain rebuilt, reduced to its txids and the txs not tracked yet, and
        dropped: holding every row and rebuilt chain at once cost hundreds of MB at thousands of exits."""
        if vtxo_ids is not None:
            ids = list(dict.fromkeys(vtxo_ids))
        else:
            ids = await self.vtxos.ids_in_state("spendable")
        async with self._changing():
            state = ExitState(ExitStateKind.START, int(await self.rpc.call("getblockcount")))
            stamp = now()
            started: list[LiveExit] = []
            new_txs: dict[str, TrackedTx] = {}
            for first in range(0, len(ids), START_BATCH):
                for row in await self.vtxos.get_many(ids[first : first + START_BATCH]):
                    existing = self.exits.get(row.vtxo_id)
                    if existing is not None and existing.state.kind is not ExitStateKind.CANCELED:
                        continue
                    if row.state == "spent":
                        # Only a request names a spent VTXO (start all and the guard take spendable ones).
                        raise VtxoAlreadySpent(row.vtxo_id, spent_reason(row))
                    try:
                        chain = exit_chain_of(row)
                    except (DustLimit, InvalidWalletState) as e:
                        if vtxo_ids is not None:
                            raise
                        event(log, logging.WARNING, "exit_skipped", vtxo=row.vtxo_id, reason=str(e))
                        continue
                    txids = self._track(chain, new_txs)
                    started.append(
                        LiveExit(
                            row.vtxo_id, row.amount_sat, row.expiry_height, txids, state, started_by, stamp
                        )
                    )
                await asyncio.sleep(0)  # thousands of chains to rebuild: let requests in meanwhile
            if started:
                await self._store_starts(started, new_txs)
        if started:
            self.wakeup.set()
        return [e.vtxo_id for e in started]

    def _track(self, chain: ExitChain, new_txs: dict[str, TrackedTx]) -> list[str]:
        """The chain's txids, root first; its txs that are tracked nowhere yet go to `new_txs`."""
        txids: list[str] = []
        input_txid = b2lx(chain.vtxo.anchor_point.txid)
        for exit_tx in chain.txs:
            txid = b2lx(exit_tx.tx.GetTxid())
            if txid not in self.txs and txid not in new_txs:
                new_txs[txid] = TrackedTx(
                    txid, exit_tx.tx.serialize(), tx_vsize(exit_tx.tx), input_txid, exit_tx.fee_anchor_index
                )
            txids.append(txid)
            input_txid = txid
        return txids

    async def _store_starts(self, started: Sequence[LiveExit], new_txs: dict[str, TrackedTx]) -> None:
        state = started[0].state
        restarted = {e.vtxo_id for e in started if e.vtxo_id in self.exits}
        async with self.store.session() as session:
            await insert_exit_txs(
                session,
                [
                    {
                        "txid": t.txid,
                        "raw": t.raw,
                        "vsize": t.vsize,
                        "input_txid": t.input_txid,
                        "anchor_vout": t.anchor_vout,
                    }
                    for t in new_txs.values()
                ],
            )
            await start_exits(
                session,
                [ExitStart(e.vtxo_id, tuple(e.txids)) for e in started],
                restarted,
                encode_state(state),
                state.kind.value,
                started[0].started_by,
                started[0].created_at,
            )
            await set_vtxos_state(session, [e.vtxo_id for e in started], "locked")
        self.txs.update(new_txs)
        for e in started:
            self.exits[e.vtxo_id] = e
            event(
                log, logging.INFO, "exit_started", vtxo=e.vtxo_id, depth=len(e.txids), started_by=e.started_by
            )

    # The cycle.

    async def progress(self, fee_rate: int | None = None) -> ProgressReport:
        """The report of a cycle that starts after this call. Calls that arrive while such a cycle waits for
        the lock share it: fifty clients asking at once cost at most two cycles, not fifty in a row. The
        cycle is shielded, so a caller that goes away does not cancel it for the others."""
        task = self._next_cycle.get(fee_rate)
        if task is None:
            task = asyncio.ensure_future(self._single_cycle(fee_rate))
            self._next_cycle[fee_rate] = task
        return await asyncio.shield(task)

    async def _single_cycle(self, fee_rate: int | None) -> ProgressReport:
        async with self._changing():
            del self._next_cycle[fee_rate]  # started: a caller from now on needs the next cycle
            started = time.monotonic()
            self.cycles_running += 1
            self.max_concurrent_cycles = max(self.max_concurrent_cycles, self.cycles_running)
            try:
                return await self._cycle(fee_rate)
            except Exception:
                self.cycle_errors += 1
                raise
            finally:
                self.cycles_running -= 1
                self.cycle_seconds += time.monotonic() - started

    def packages(self, e: LiveExit) -> list[tuple[TrackedTx, ChildRecord | None, ExitTxOrigin | None]]:
        """Each exit tx with the child that matters now (in flight or confirmed) and where that child came
        from: as the current status says, else from what the engine recorded of it."""
        statuses = {tx.txid: tx.status for tx in e.state.transactions}
        result: list[tuple[TrackedTx, ChildRecord | None, ExitTxOrigin | None]] = []
        for txid in e.txids:
            tracked = self.txs[txid]
            status = statuses.get(txid)
            child = tracked.children.get(status.child_txid) if status and status.child_txid else None
            if child is None:
                live = [c for c in tracked.children.values() if c.status in ("confirmed", "broadcast")]
                child = live[-1] if live else None
            origin = status.origin if status is not None and status.origin is not None else None
            if origin is None and child is not None:
                origin = child.origin()
            result.append((tracked, child, origin))
        return result

    def _report(self) -> ProgressReport:
        exits = [e for e in self.exits.values() if not e.state.kind.is_finished]
        pending = [e for e in exits if e.state.kind.is_pending]
        heights = [h for e in exits if (h := _claimable_height(e.state)) is not None]
        unknown = any(_claimable_height(e.state) is None for e in pending)
        return ProgressReport(
            tuple(ExitProgress(e.vtxo_id, e.state, e.error, e.raised_rate) for e in exits),
            not pending,
            None if unknown or not heights else max(heights),
        )

    async def _cycle(self, override: int | None) -> ProgressReport:
        started = time.monotonic()
        watched = [e for e in self.exits.values() if self._watched(e)]
        guarded = await self.guard.watched_txids() if self.guard is not None else ()
        if not watched and not guarded:
            self.cycles += 1
            return self._report()
        snap = await self._snapshot(watched, guarded)
        self.last_tip = snap.tip
        for e in watched:
            e.error = None
        sharers = self._sharers(watched)
        await self._learn_children(snap, sharers)
        market = await self.fees.market(() if override is not None else self._level_targets(sharers, snap))
        if override is not None:
            raised = RaisedRate.of(override, market.relay)
            for e in watched:
                e.raised_rate = raised
        targets = self._tx_targets(sharers, snap, market, override)
        await self._fund_ahead(snap, targets)
        statuses = await self._tx_statuses(sharers, snap, targets, override is not None, market.relay)
        await self._learn_claim_timelocks(watched)
        await self._persist([(e, self._advance(e, snap, statuses)) for e in watched])
        if self.guard is not None:
            await self.guard.after_cycle(snap)
        self.cycles += 1
        event(
            log,
            logging.DEBUG,
            "cycle",
            exits=len(watched),
            tip=snap.tip.height,
            ms=int((time.monotonic() - started) * 1000),
        )
        return self._report()

    def _watched(self, e: LiveExit) -> bool:
        if e.state.kind is ExitStateKind.CANCELED:
            return False
        if e.state.kind is ExitStateKind.CLAIMED:
            tip = self.last_tip.height if self.last_tip else 0
            return e.state.block is not None and tip - e.state.block.height < FINAL_DEPTH
        return True

    async def _snapshot(self, exits: Iterable[LiveExit], guarded: Iterable[str] = ()) -> ChainSnapshot:
        txids: list[str] = list(guarded)
        spends: list[tuple[str, int]] = []
        heights: list[int] = []
        utxos: list[tuple[str, int]] = []
        for e in exits:
            kind = e.state.kind
            if kind in (ExitStateKind.START, ExitStateKind.PROCESSING, ExitStateKind.AWAITING_DELTA):
                for txid in e.txids:
                    tracked = self.txs[txid]
                    txids += [txid, tracked.input_txid]
                    txids += [
                        c.txid for c in tracked.children.values() if c.status in ("stored", "broadcast")
                    ]
                    spends.append((txid, tracked.anchor_vout))
            if kind is ExitStateKind.AWAITING_DELTA and e.state.claimable_height is not None:
                heights.append(e.state.claimable_height)
            if kind in (
                ExitStateKind.AWAITING_DELTA,
                ExitStateKind.CLAIMABLE,
                ExitStateKind.CLAIM_IN_PROGRESS,
                ExitStateKind.CLAIMED,
            ):
                spends.append(e.outpoint)
                utxos.append(e.outpoint)
                txids.append(e.txids[-1])
            if e.state.claimable_since is not None:
                heights.append(e.state.claimable_since.height)
            for claim in (e.state.claim_txid, e.state.txid):
                if claim:
                    txids.append(claim)
        return await self.view.snapshot(txids, spends, heights, utxos)

    async def _learn_children(self, snap: ChainSnapshot, sharers: dict[str, list[LiveExit]]) -> None:
        """Bring our records of children in line with the chain: confirmed, lost, or adopted from others."""
        changed: list[ChildRecord] = []
        adopt: list[tuple[TrackedTx, str]] = []
        for tracked in self.txs.values():
            location = snap.location(tracked.txid)
            spender = snap.spenders.get((tracked.txid, tracked.anchor_vout))
            for child in tracked.children.values():
                if child.status not in ("stored", "broadcast"):
                    continue
                loc = snap.location(child.txid)
                if loc.state is TxState.CONFIRMED:
                    child.status, child.block = "confirmed", loc.block
                    changed.append(child)
                elif loc.state is TxState.MEMPOOL and child.status == "stored":
                    child.status = "broadcast"
                    changed.append(child)
                elif (spender is not None and spender != child.txid) or location.state is TxState.CONFIRMED:
                    # Another child won the anchor (a replacement of ours, or someone else's).
                    child.status = "replaced"
                    changed.append(child)
            if spender is not None and spender not in tracked.children:
                adopt.append((tracked, spender))
        if adopt:
            raws = await self.rpc.batch(("getrawtransaction", [txid]) for _, txid in adopt)
            for (tracked, txid), raw in zip(adopt, raws, strict=True):
                package = snap.packages.get(txid)
                if isinstance(raw, RpcError):
                    _set_error(sharers.get(tracked.txid, ()), TransactionRetrievalFailure(txid, raw.message))
                    continue
                if package is None:
                    continue  # confirmed or gone since the snapshot: the next cycle sees where
                child = ChildRecord(
                    txid,
                    tracked.txid,
                    bytes.fromhex(raw),
                    package.fee,
                    package.vsize - tracked.vsize,
                    package.rate,
                    "network",
                    "broadcast",
                )
                tracked.children[txid] = child
                changed.append(child)
                event(log, logging.INFO, "child_adopted", txid=tracked.txid, child=txid, rate=package.rate)
        await self._resolve_confirmed_children(snap, changed, sharers)
        if changed:
            await self._save_children(changed, release=[c for c in changed if c.status == "replaced"])

    async def _resolve_confirmed_children(
        self, snap: ChainSnapshot, changed: list[ChildRecord], sharers: dict[str, list[LiveExit]]
    ) -> None:
        """For exit txs confirmed without a known child, find the P2A spender in their block (once per
        tx and block: a tx mined without its child is not looked for again)."""
        wanted: dict[str, list[TrackedTx]] = {}
        for tracked in self.txs.values():
            loc = snap.txs.get(tracked.txid)
            if loc is None or loc.state is not TxState.CONFIRMED or loc.block is None:
                continue
            if any(c.status == "confirmed" and c.block == loc.block for c in tracked.children.values()):
                continue
            if (tracked.txid, loc.block.hash) in self._scanned:
                continue
            wanted.setdefault(loc.block.hash, []).append(tracked)
        if not wanted:
            return
        blocks = await self.rpc.batch(("getblock", [h, 2]) for h in wanted)
        for (block_hash, trackeds), block in zip(wanted.items(), blocks, strict=True):
            if isinstance(block, RpcError):
                for tracked in trackeds:
                    height = snap.location(tracked.txid).block
                    error = BlockRetrievalFailure(height.height if height else 0, block.message)
                    _set_error(sharers.get(tracked.txid, ()), error)
                continue
            self._scanned.update((tracked.txid, block_hash) for tracked in trackeds)
            ref = BlockRef(int(block["height"]), block_hash)
            spends = {
                (vin.get("txid"), vin.get("vout")): tx
                for tx in block["tx"]
                for vin in tx["vin"]
                if "txid" in vin
            }
            for tracked in trackeds:
                tx = spends.get((tracked.txid, tracked.anchor_vout))
                if tx is None:
                    continue
                child = tracked.children.get(tx["txid"])
                if child is None:
                    child = ChildRecord(
                        tx["txid"],
                        tracked.txid,
                        bytes.fromhex(tx["hex"]),
                        0,
                        int(tx["vsize"]),
                        0,
                        "network",
                        "confirmed",
                        ref,
                    )
                    tracked.children[child.txid] = child
                child.status, child.block = "confirmed", ref
                changed.append(child)

    async def _save_children(
        self, children: Iterable[ChildRecord], release: Iterable[ChildRecord] = ()
    ) -> None:
        children = list(children)
        async with self.store.session() as session:
            stored = await get_children(session, [c.txid for c in children])
            for c in children:
                row = stored.get(c.txid)
                if row is None:
                    session.add(_child_row(c))
                else:
                    row.status = c.status
                    row.block_height = c.block.height if c.block else None
                    row.block_hash = c.block.hash if c.block else None
            for c in release:
                if c.source == "wallet" and self.wallet is not None:
                    await self.wallet.release_reservations(session, c.txid)

    def _sharers(self, watched: Iterable[LiveExit]) -> dict[str, list[LiveExit]]:
        sharers: dict[str, list[LiveExit]] = {}
        for e in watched:
            if e.state.kind in (ExitStateKind.START, ExitStateKind.PROCESSING, ExitStateKind.AWAITING_DELTA):
                for txid in e.txids:
                    sharers.setdefault(txid, []).append(e)
        return sharers

    def _refcounts(self) -> dict[str, int]:
        """How many exits (canceled ones aside) need each exit tx, to split a shared tx's fees among them."""
        refcount: dict[str, int] = {}
        for other in self.exits.values():
            if other.state.kind is not ExitStateKind.CANCELED:
                for txid in other.txids:
                    refcount[txid] = refcount.get(txid, 0) + 1
        return refcount

    def fees_paid(self, e: LiveExit, refcount: dict[str, int] | None = None) -> int:
        """CPFP fees of this exit's live children; a shared tx's child counts once, split among its exits.
        `refcount`: _refcounts(), when the caller asks for many exits (each call would recount all)."""
        if refcount is None:
            refcount = self._refcounts()
        total = 0
        for txid in e.txids:
            for c in self.txs[txid].children.values():
                if c.source == "wallet" and c.status in ("broadcast", "confirmed"):
                    total += c.fee // max(1, refcount.get(txid, 1))
        return total

    async def histories(self, vtxo_ids: Sequence[str]) -> dict[str, list[ExitState]]:
        """The earlier states of these exits, oldest first, from the store (not held in memory: at
        thousands of exits they would be most of the daemon's size)."""
        async with self.store.session() as session:
            records = await load_histories(session, vtxo_ids)
        return {vtxo_id: [state_of(r) for r in history] for vtxo_id, history in records.items()}

    def fees_paid_each(self, exits: Iterable[LiveExit]) -> dict[str, int]:
        """fees_paid of many exits by VTXO id, the shared txs counted once for all (a status listing of N
        exits would otherwise recount every exit N times)."""
        refcount = self._refcounts()
        return {e.vtxo_id: self.fees_paid(e, refcount) for e in exits}

    def _level_targets(self, sharers_of: dict[str, list[LiveExit]], snap: ChainSnapshot) -> set[int]:
        """The confirmation targets the exits with a level in flight ask the market about."""
        exits = {e.vtxo_id: e for sharers in sharers_of.values() for e in sharers}
        return {
            level_target(snap.tip.height, e.expiry_height, e.levels_left(snap), self.policy)
            for e in exits.values()
        }

    def _tx_targets(
        self, sharers_of: dict[str, list[LiveExit]], snap: ChainSnapshot, market: Market, override: int | None
    ) -> dict[str, int]:
        """Each exit tx's target rate: the most urgent deadline rate of the exits that need it (each exit's
        counted once, not once per tx it shares). The market rate of an exit is the estimate for its level's
        target, or the request's rate raised to the node's floor."""
        exits = {e.vtxo_id: e for sharers in sharers_of.values() for e in sharers}
        tip = snap.tip.height
        rate_of: dict[str, int] = {}
        for vtxo_id, e in exits.items():
            levels = e.levels_left(snap)
            if override is not None:
                base = market.relay.raised(override)
            else:
                base = market.rate(level_target(tip, e.expiry_height, levels, self.policy))
            rate_of[vtxo_id] = deadline_rate(base, tip, e.expiry_height, levels, self.policy)
        return {txid: max(rate_of[e.vtxo_id] for e in sharers) for txid, sharers in sharers_of.items()}

    def _budget_rate(
        self,
        sharers: list[LiveExit],
        snap: ChainSnapshot,
        tracked: TrackedTx,
        target: int,
        refcount: dict[str, int],
    ) -> int:
        budget_left = sum(
            max(0, fee_budget(e.amount, self.policy) - self.fees_paid(e, refcount))
            // max(1, e.levels_left(snap))
            for e in sharers
        )
        return budget_capped_rate(target, budget_left, 1, tracked.vsize + CHILD_VSIZE_ESTIMATE)

    async def _tx_statuses(
        self,
        sharers_of: dict[str, list[LiveExit]],
        snap: ChainSnapshot,
        targets: dict[str, int],
        explicit: bool,
        relay: RelayPolicy,
    ) -> dict[str, ExitTxStatus]:
        statuses: dict[str, ExitTxStatus] = {}
        work: list[PackageWork] = []
        refcount = self._refcounts()
        for txid, sharers in sharers_of.items():
            tracked = self.txs[txid]
            facts = self._facts(tracked, snap)
            target = targets[txid]
            status, action = next_tx_status(facts, target)
            statuses[txid] = status
            if action is None:
                continue
            rate = target if explicit else self._budget_rate(sharers, snap, tracked, target, refcount)
            if rate < target:
                _set_error(sharers, FeeBudgetExceeded(rate, target, self.policy.budget_ratio))
            if rate >= relay.floor:
                work.append(PackageWork(tracked, action, rate, sharers, status))
        await self._act(work, relay)
        statuses.update((w.tracked.txid, w.status) for w in work)
        return statuses

    async def _fund_ahead(self, snap: ChainSnapshot, targets: dict[str, int]) -> None:
        """The funding hook: before this cycle's children choose their coins, the wallet plans the coins
        of the levels left and splits one ahead of need (exitd/wallet/planner.py). A failure there costs
        speed, never correctness: it is logged and the cycle goes on."""
        self.planned = tuple(self._planned_txs(snap, targets))
        self.funding_outlook = None
        if self.funding is None:
            return
        try:
            self.funding_outlook = await self.funding.ensure_funding(self.planned)
        except (RpcError, NoWallet) as e:
            event(log, logging.WARNING, "funding_failed", error=str(e))

    def _planned_txs(self, snap: ChainSnapshot, targets: dict[str, int]) -> Iterator[PlannedTx]:
        """Each exit tx not confirmed yet, once however many exits share it, at its target rate; funded
        when a child pays for it already (in the mempool, or ours stored for broadcast)."""
        for txid, target in targets.items():
            if snap.is_confirmed(txid):
                continue
            tracked = self.txs[txid]
            funded = snap.location(txid).state is TxState.MEMPOOL or any(
                c.status == "stored" for c in tracked.children.values()
            )
            yield PlannedTx(txid, tracked.input_txid, tracked.vsize, target, funded)

    def _facts(self, tracked: TrackedTx, snap: ChainSnapshot) -> TxFacts:
        location = snap.location(tracked.txid)
        confirmed_child = None
        if location.state is TxState.CONFIRMED:
            for c in tracked.children.values():
                if c.status == "confirmed" and c.block == location.block:
                    confirmed_child = c.as_child()
        spender_txid = snap.spenders.get((tracked.txid, tracked.anchor_vout))
        pending = tuple(c.as_child() for c in tracked.children.values() if c.pending)
        return TxFacts(
            txid=tracked.txid,
            location=location,
            input_txid=tracked.input_txid,
            input_confirmed=snap.is_confirmed(tracked.input_txid),
            spender=snap.packages.get(spender_txid) if spender_txid else None,
            pending_children=pending,
            confirmed_child=confirmed_child,
        )

    async def _act(self, work: list[PackageWork], relay: RelayPolicy) -> None:
        """This cycle's packages, whatever their number, in three steps: the new children built and stored
        in one transaction, every package submitted in one round trip, every answer recorded in one
        transaction. Each step ends before the next starts, so a child is never broadcast unless stored."""
        for w in work:
            if w.action.kind is ActionKind.BROADCAST:
                assert w.action.child_txid is not None
                w.child = w.tracked.children[w.action.child_txid]
        await self._build_children([w for w in work if w.child is None], relay)
        ready = [w for w in work if w.child is not None]
        if not ready:
            return
        await self._crash_point("after_child_stored")
        results = await submit_packages(self.rpc, [[w.tracked.raw, w.child.raw] for w in ready if w.child])
        await self._crash_point("after_submit")
        await self._record_broadcasts(ready, results)

    async def _build_children(self, work: list[PackageWork], relay: RelayPolicy) -> None:
        if not work:
            return
        if self.wallet is None:
            for w in work:
                _set_error(w.sharers, InternalError("no on-chain wallet to fund CPFP children"))
            return
        requests = [CpfpRequest(w.tracked.tx, w.rate, _replacing(w.action, relay)) for w in work]
        try:
            async with self.store.session(spends=True) as session:
                built = await self.wallet.build_cpfp_children(session, requests)
                for w, result in zip(work, built, strict=True):
                    if isinstance(result, CpfpChild):
                        w.child = ChildRecord(
                            result.txid,
                            w.tracked.txid,
                            result.tx.serialize(),
                            result.fee,
                            result.vsize,
                            result.package_rate,
                            "wallet",
                            "stored",
                        )
                        session.add(_child_row(w.child))
                    else:
                        self._too_poor(w, result)
        except (ExitError, RpcError) as e:
            error = e if isinstance(e, ExitError) else InternalError(str(e))
            for w in work:
                _set_error(w.sharers, error)
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

    def _too_poor(self, w: PackageWork, e: InsufficientFunds) -> None:
        outlook = self.funding_outlook
        if outlook is not None and outlook.split_txid is not None and not outlook.missing:
            # Not poor: this child's coin is in the funding split, confirmed in the next block.
            event(log, logging.INFO, "child_awaits_split", txid=w.tracked.txid, split=outlook.split_txid)
            return
        _set_error(w.sharers, InsufficientConfirmedFunds(e.needed, e.available))
        event(
            log,
            logging.WARNING,
            "wallet_too_poor",
            txid=w.tracked.txid,
            needed=e.needed,
            available=e.available,
        )

    async def _record_broadcasts(self, ready: list[PackageWork], results: list[PackageResult]) -> None:
        """Each package's answer: the child broadcast (and the children it replaced), a refused replacement
        kept for a later try, or the child abandoned; saved together."""
        changed: list[ChildRecord] = []
        release: list[ChildRecord] = []
        for w, result in zip(ready, results, strict=True):
            child, tracked = w.child, w.tracked
            assert child is not None
            if result.in_mempool:
                losers = [c for c in tracked.children.values() if c.pending and c.txid != child.txid]
                self.packages_broadcast += 1
                self.cpfp_fees_paid += child.fee if child.status != "broadcast" else 0
                child.status = "broadcast"
                for c in losers:
                    c.status = "replaced"
                changed += [child, *losers]
                release += losers
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
            elif result.outcome is PackageOutcome.NOT_ANSWERED:
                # Kept as stored: the next snapshot shows whether it got in, else it is sent again.
                event(log, logging.WARNING, "package_unanswered", txid=tracked.txid, child=child.txid)
                _set_error(w.sharers, ExitPackageBroadcastFailure(tracked.txid, result.message))
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
                child.status = "abandoned"
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
                _set_error(w.sharers, ExitPackageBroadcastFailure(tracked.txid, result.message))
        if changed:
            await self._save_children(changed, release=release)

    async def _crash_point(self, name: str) -> None:
        if self.crash_hook is not None:
            await self.crash_hook(name)

    def _advance(self, e: LiveExit, snap: ChainSnapshot, statuses: dict[str, ExitTxStatus]) -> ExitState:
        """The exit's next state from the snapshot and this cycle's tx statuses."""
        facts = self._exit_facts(e, snap)
        state = e.state
        kind = state.kind
        tip = snap.tip.height
        if kind in (ExitStateKind.START, ExitStateKind.PROCESSING, ExitStateKind.AWAITING_DELTA):
            txs = [ExitTx(txid, statuses.get(txid, VERIFY_INPUTS)) for txid in e.txids]
            new = processing_or_done(tip, txs, facts)
            if kind is ExitStateKind.AWAITING_DELTA and new.kind is ExitStateKind.AWAITING_DELTA:
                new = new if not new.same_as(state) else state
        elif kind is ExitStateKind.CLAIMABLE:
            new = self._claimable_checked(e, facts, snap)
        else:
            new = claim_next(state, facts)
        return new

    def _claimable_checked(self, e: LiveExit, facts: ExitFacts, snap: ChainSnapshot) -> ExitState:
        since = e.state.claimable_since
        assert since is not None
        leaf = snap.location(e.txids[-1])
        if leaf.state is not TxState.CONFIRMED or facts.block_hashes.get(since.height) != since.hash:
            # Reorged (the block of claimable_since is gone or replaced): start over from the txs, which
            # the next cycle re-derives.
            return ExitState(
                ExitStateKind.PROCESSING,
                snap.tip.height,
                transactions=tuple(ExitTx(t, VERIFY_INPUTS) for t in e.txids),
            )
        return claimable_next(e.state, facts)

    def _exit_facts(self, e: LiveExit, snap: ChainSnapshot) -> ExitFacts:
        assert e.claim_delay is not None
        claim_txid = e.state.claim_txid or e.state.txid
        return ExitFacts(
            tip=snap.tip,
            claim_delay=e.claim_delay,
            claim_locktime=e.claim_locktime,
            block_hashes=snap.block_hashes,
            vtxo_unspent=snap.unspent.get(e.outpoint, True),
            vtxo_mempool_spender=snap.spenders.get(e.outpoint),
            claim_location=snap.location(claim_txid) if claim_txid else None,
        )

    async def _learn_claim_timelocks(self, exits: Iterable[LiveExit]) -> None:
        """The claim clause's timelocks of exits that lack them (first cycle after a start or a load), from
        one read of their VTXOs: decoding them every cycle, or one read per exit, costs O(N) round trips."""
        missing = [e for e in exits if e.claim_delay is None]
        if not missing:
            return
        rows = await self.vtxos.get_many([e.vtxo_id for e in missing])
        for e, row in zip(missing, rows, strict=True):
            vtxo = vtxo_of(row)
            assert isinstance(vtxo.policy, UserPolicy)
            clause = vtxo.policy.user_claim_clause(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
            e.claim_delay, e.claim_locktime = clause.csv_blocks, clause.cltv_height

    async def _persist(self, changes: Sequence[tuple[LiveExit, ExitState]]) -> None:
        """Give each exit its new state, and write in one session the exits whose state or error changed
        (a session per exit per cycle would cost more than the rest of the cycle at a thousand exits)."""
        writes: list[tuple[LiveExit, bool, str | None]] = []
        for e, new in changes:
            changed = not new.same_as(e.state)
            if changed:
                event(
                    log,
                    logging.INFO,
                    "exit_state",
                    vtxo=e.vtxo_id,
                    old=e.state.kind.value,
                    new=new.kind.value,
                    tip=new.tip_height,
                )
                e.state = new
            error = encode_error(e.error) if e.error else None
            if changed or error != e.stored_error:
                writes.append((e, changed, error))
        if not writes:
            return
        async with self.store.session() as session:
            await update_exits(
                session,
                [
                    ExitUpdate(e.vtxo_id, error, encode_state(e.state), e.state.kind.value)
                    if changed
                    else ExitUpdate(e.vtxo_id, error)
                    for e, changed, error in writes
                ],
            )
            claimed = [
                e.vtxo_id for e, changed, _ in writes if changed and e.state.kind is ExitStateKind.CLAIMED
            ]
            await set_vtxos_state(session, claimed, "spent")
        for e, _, error in writes:
            e.stored_error = error

    # Claims.

    async def claim(
        self,
        vtxo_ids: Sequence[str] | None,
        destination: bytes,
        fee_rate: int | None,
        preimages: dict[str, bytes] | None = None,
    ) -> str:
        """Broadcast one claim tx for the given (or all) claimable exits; returns its txid."""
        async with self._changing():
            if vtxo_ids is None:
                chosen = [e for e in self.exits.values() if e.state.kind is ExitStateKind.CLAIMABLE]
            else:
                chosen = []
                for vtxo_id in vtxo_ids:
                    e = self.exits.get(vtxo_id)
                    if e is None or e.state.kind is not ExitStateKind.CLAIMABLE:
                        raise VtxoNotClaimable(vtxo_id, e.state.kind.value if e else "not exiting")
                    chosen.append(e)
            if not chosen:
                raise ClaimMissingInputs()
            tip = int(await self.rpc.call("getblockcount"))
            if fee_rate is None:
                rate = (await self.fees.rates()).regular
            else:
                relay = await self.fees.relay()
                rate = relay.raised(fee_rate)
                for e in chosen:
                    e.raised_rate = RaisedRate.of(fee_rate, relay)
            inputs = [await self._claim_input(e, (preimages or {}).get(e.vtxo_id)) for e in chosen]
            tx, fee = build_claim_tx(inputs, destination, rate, tip)
            await self.store.check_leader()  # a deposed leader's claim would race the new leader's
            await self._crash_point("before_claim_broadcast")
            txid = await send_raw_transaction(self.rpc, tx.serialize())
            await self._crash_point("after_claim_broadcast")
            event(log, logging.INFO, "claim_broadcast", txid=txid, exits=len(chosen), fee=fee, rate=rate)
            self.claim_fees_paid += fee
            await self._persist(
                [
                    (
                        e,
                        ExitState(
                            ExitStateKind.CLAIM_IN_PROGRESS,
                            tip,
                            claimable_since=e.state.claimable_since,
                            claim_txid=txid,
                        ),
                    )
                    for e in chosen
                ]
            )
            return txid

    async def _claim_input(self, e: LiveExit, preimage: bytes | None) -> ClaimInput:
        row = await self.vtxos.get(e.vtxo_id)
        vtxo = vtxo_of(row)
        if row.key_index is None:
            raise ClaimMissingSignableClause(e.vtxo_id, "this wallet does not hold the VTXO's user key")
        assert isinstance(vtxo.policy, UserPolicy)
        clause = vtxo.policy.user_claim_clause(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
        preimage = preimage or row.preimage
        if clause.needs_preimage and preimage is None:
            raise ClaimMissingSignableClause(e.vtxo_id, "the HTLC-receive claim needs the payment preimage")
        secret = self.vtxos.keychain.seckey(row.key_index)
        signer = ClaimSigner(clause, secret, preimage if clause.needs_preimage else None)
        return ClaimInput(OutPoint.from_str(e.vtxo_id), vtxo.amount, clause.script_pubkey, signer)

    # Fee estimate (barkd 0.6.0).

    async def estimate(
        self, rows: Sequence[VtxoRow], fee_rate: int | None, destination: bytes, confirmed_balance: int
    ) -> FeeEstimate:
        """What exiting `rows` still costs: a CPFP package for every exit tx not yet in the chain or the
        mempool (a tx shared by several VTXOs counted once), and one batched claim."""
        if fee_rate is None:
            rates = await self.fees.rates()
            broadcast_rate, claim_rate = rates.fast, rates.regular
        else:
            broadcast_rate = claim_rate = (await self.fees.relay()).raised(fee_rate)
        vsizes: dict[str, int] = {}
        inputs: dict[str, str] = {}
        clauses = []
        for row in rows:
            vtxo = vtxo_of(row)
            input_txid = b2lx(vtxo.anchor_point.txid)
            for exit_tx in build_exit_chain(vtxo).txs:
                txid = b2lx(exit_tx.tx.GetTxid())
                vsizes[txid] = tx_vsize(exit_tx.tx)
                inputs[txid] = input_txid
                input_txid = txid
            assert isinstance(vtxo.policy, UserPolicy)
            clauses.append(
                vtxo.policy.user_claim_clause(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
            )
        snap = await self.view.snapshot(vsizes)
        pending = [v for txid, v in vsizes.items() if snap.location(txid).state is TxState.NOT_FOUND]
        broadcast = exit_fee_estimate(broadcast_rate, pending)
        claim = -(-claim_rate * claim_tx_vsize(clauses, destination) // 1000) if clauses else 0
        planned = {p.txid: p for p in self.planned}
        for txid, vsize in vsizes.items():
            state = snap.location(txid).state
            if txid not in planned and state is not TxState.CONFIRMED:
                funded = state is TxState.MEMPOOL
                planned[txid] = PlannedTx(txid, inputs[txid], vsize, broadcast_rate, funded)
        return FeeEstimate(
            broadcast,
            claim,
            broadcast_rate,
            len(pending),
            confirmed_balance >= broadcast,
            tuple(planned.values()),
        )

    # Cancel (barkd 0.6.0).

    async def cancel(self, vtxo_id: str) -> None:
        async with self._changing():
            e = self.exits.get(vtxo_id)
            if e is None:
                raise NotExiting(vtxo_id)
            if e.state.kind is ExitStateKind.CANCELED:
                return
            if e.state.kind not in (ExitStateKind.START, ExitStateKind.PROCESSING):
                raise CannotCancelExit(
                    vtxo_id,
                    e.state.kind.value,
                    f"it is {e.state.kind.value}; only exits whose leaf transaction is not yet broadcast "
                    "can be canceled",
                )
            leaf = e.txids[-1]
            snap = await self.view.snapshot([leaf])
            if snap.location(leaf).state is not TxState.NOT_FOUND:
                raise CannotCancelExit(
                    vtxo_id, e.state.kind.value, f"its leaf transaction {leaf} is already broadcast"
                )
            await self._persist([(e, ExitState(ExitStateKind.CANCELED, snap.tip.height))])
            still_needed = {
                t for o in self.exits.values() if o.state.kind is not ExitStateKind.CANCELED for t in o.txids
            }
            dropped = [
                c
                for t in e.txids
                if t not in still_needed
                for c in self.txs[t].children.values()
                if c.status == "stored"
            ]
            for c in dropped:
                c.status = "abandoned"
            async with self.store.session() as session:
                await set_vtxos_state(session, [vtxo_id], "spendable")
            await self._save_children(dropped, release=dropped)
            event(log, logging.INFO, "exit_canceled", vtxo=vtxo_id)

    # Background.

    async def run(
        self, stopping: asyncio.Event, poll_interval: float = 1.0, cycle_interval: float = 30.0
    ) -> None:
        """Advance exits on every new block (waited for, and polled every `poll_interval`), on a timer and
        when woken."""
        best: str | None = None
        height = 0
        last_cycle = 0.0
        while not stopping.is_set():
            try:
                info = await self.rpc.call("getblockchaininfo")
                current, height = str(info["bestblockhash"]), int(info["blocks"])
                due = (
                    current != best or self.wakeup.is_set() or time.monotonic() - last_cycle > cycle_interval
                )
                if due:
                    self.wakeup.clear()
                    await self.progress()
                    last_cycle = time.monotonic()
                    if current != best:
                        best = current
                        async with self.new_block:
                            self.new_block.notify_all()
            except RpcError as e:
                event(log, logging.WARNING, "cycle_failed", error=str(e))
            except sa.exc.OperationalError as e:
                event(log, logging.ERROR, "cycle_failed", error=f"database: {e.orig}")
            except Exception:
                log.exception("cycle_crashed")
            waiters = {
                asyncio.ensure_future(self.wakeup.wait()),
                asyncio.ensure_future(stopping.wait()),
                asyncio.ensure_future(self._next_block(height, poll_interval)),
            }
            await asyncio.wait(waiters, timeout=poll_interval, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _next_block(self, height: int, timeout: float) -> None:
        """Return once bitcoind's tip is above `height` (at once if it already is: a block that came during
        the cycle), or after `timeout` s. waitforblockheight is a long poll: a block is acted on within
        milliseconds, not at the next poll (half a poll late on average). A reorg to another chain of the
        same height is seen by the next poll."""
        try:
            await self.rpc.call("waitforblockheight", height + 1, int(timeout * 1000))
        except RpcError:
            await asyncio.sleep(timeout)  # a node without it: polling alone

    async def wait_for_block(self, timeout: float) -> None:
        async with self.new_block:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.new_block.wait(), timeout)


def _child_row(c: ChildRecord) -> ExitChildRow:
    return ExitChildRow(
        txid=c.txid,
        parent_txid=c.parent_txid,
        raw=c.raw,
        fee=c.fee,
        vsize=c.vsize,
        package_rate=c.package_rate,
        source=c.source,
        status=c.status,
        block_height=c.block.height if c.block else None,
        block_hash=c.block.hash if c.block else None,
        created_at=now(),
    )


def _set_error(exits: Iterable[LiveExit], error: ExitError) -> None:
    for e in exits:
        e.error = error


def _claimable_height(state: ExitState) -> int | None:
    if state.kind is ExitStateKind.AWAITING_DELTA:
        return state.claimable_height
    if state.claimable_since is not None:
        return state.claimable_since.height
    return None


def _replacing(action: Action, relay: RelayPolicy) -> Replacing | None:
    """What a child that replaces a package must beat: that package's fee plus the node's increment."""
    if action.min_package_fee is None:
        return None
    return Replacing(action.min_package_fee, relay.incremental)
