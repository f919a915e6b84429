"""The exit engine: starts exits, runs the progress cycle (one at a time), claims and cancels.

This is the engine's face to the daemon and the API; the work is done in its rooms: the book of exits
(model.py) and how the store keeps it (records.py), what a cycle decides (decisions.py, transitions.py),
the cycle itself (cycle.py), children learned (children.py) and paid for (packages.py), starts read
(starts.py) and admitted (admission_desk.py), claims asked for (claim_requests.py) and built
(claims.py), and the fee estimate (estimate.py). Everything that changes exits holds one lock, so a
cycle, a start, a claim and a cancel never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from exitd.chain.blocks import tip_height
from exitd.chain.fees import FeeEstimator
from exitd.chain.rpc import BitcoinRpc, RpcError
from exitd.chain.view import BlockRef, ChainView, TxState
from exitd.chain.watcher import BlockWatcher
from exitd.engine.admission import Admissions
from exitd.engine.admission_desk import AdmissionDesk
from exitd.engine.children import ChildLearner
from exitd.engine.claim_desk import ClaimDesk
from exitd.engine.claim_requests import ClaimRequests
from exitd.engine.cycle import CycleGuard, Funding, ProgressCycle
from exitd.engine.errors import CannotCancelExit, ClaimHeld, NotExiting, StartRefused
from exitd.engine.estimate import FeeEstimate, estimate_exit
from exitd.engine.fee_policy import FeePolicy
from exitd.engine.model import (
    ChildRecord,
    ChildStatus,
    EngineCounters,
    ExitBook,
    LiveExit,
    ProgressReport,
    TrackedTx,
)
from exitd.engine.outcomes import ClaimBroadcast, StartReport
from exitd.engine.packages import CpfpFunder, CrashHook, PackageDesk
from exitd.engine.persist import (
    LoadedRows,
    load_book,
    persist_states,
    refresh_book,
    save_children,
    store_starts,
)
from exitd.engine.records import state_of
from exitd.engine.replacement import ClaimPolicy
from exitd.engine.starts import USER, read_starts
from exitd.engine.states import ExitState, ExitStateKind, ExitTxOrigin
from exitd.engine.timing import HeapSettler
from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.exits import load_histories, now
from exitd.store.locations import StoredLocations
from exitd.store.vtxos import StoredVtxo, set_vtxos_state
from exitd.wallet.vtxos import VtxoBook

log = get_logger("engine")


@dataclass
class NextCycle:
    """A cycle waiting for the lock, and whether one of its callers wants its report."""

    task: asyncio.Task[ProgressReport | None]
    report: bool


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
        *,
        book: ExitBook | None = None,
        guard: CycleGuard | None = None,
        funding: Funding | None = None,
        claims: ClaimPolicy | None = None,
        crash_hook: CrashHook | None = None,
    ) -> None:
        """`book`: the exits' book, when something built before the engine (the guard) reads it too;
        `guard`: guard mode, looking at every cycle; `funding`: the wallet's plan of coins ahead;
        `claims`: when claims in flight are replaced; `crash_hook`: test-only fault injection, called at
        named points."""
        self.store = store
        self.rpc = rpc
        self.view = ChainView(rpc, StoredLocations(store))
        self.fees = fees
        self.vtxos = vtxos
        self.wallet = wallet
        self.policy = policy
        self.network = network
        self.book = book if book is not None else ExitBook()
        self.counters = EngineCounters()
        self.admission = AdmissionDesk(self.view, fees, policy, funding)
        self.watcher = BlockWatcher(rpc)
        self.desk = PackageDesk(store, rpc, wallet, self.counters, crash_hook)
        self.claim_desk = ClaimDesk(
            store, rpc, fees, vtxos, self.book, self.counters, claims or ClaimPolicy(), policy
        )
        self.claim_requests = ClaimRequests(self.claim_desk, self.desk)
        self.cycle = ProgressCycle(
            store,
            self.view,
            fees,
            vtxos,
            policy,
            self.book,
            ChildLearner(store, rpc, self.book, wallet),
            self.desk,
            self.claim_desk,
            self.counters,
            guard,
            funding,
        )
        self.cycle_lock = asyncio.Lock()
        # Counts what held the cycle lock (cycles, starts, claims, cancels) and loads: whatever was computed
        # from the exits (a status listing) under one version still holds under it.
        self.version = 0
        # The rows the book was last read from, while it mirrors them (refresh); None once it changed.
        self._loaded: LoadedRows | None = None
        # The cycle of each fee-rate override that waits for the lock: callers arriving meanwhile share it.
        self._next_cycle: dict[int | None, NextCycle] = {}
        self.heap = HeapSettler()

    # What the API, the metrics and the daemon read.

    @property
    def exits(self) -> dict[str, LiveExit]:
        return self.book.exits

    @property
    def txs(self) -> dict[str, TrackedTx]:
        return self.book.txs

    @property
    def last_tip(self) -> BlockRef | None:
        return self.cycle.last_tip

    @property
    def wakeup(self) -> asyncio.Event:
        return self.watcher.wakeup

    def packages(self, e: LiveExit) -> list[tuple[TrackedTx, ChildRecord | None, ExitTxOrigin | None]]:
        return self.book.packages(e)

    def fees_paid(self, e: LiveExit) -> int:
        return self.book.fees_paid(e)

    def fees_paid_each(self, exits: Sequence[LiveExit]) -> dict[str, int]:
        return self.book.fees_paid_each(exits)

    async def histories(self, vtxo_ids: Sequence[str]) -> dict[str, list[ExitState]]:
        """The earlier states of these exits, oldest first, from the store (not held in memory: at
        thousands of exits they would be most of the daemon's size)."""
        async with self.store.session() as session:
            records = await load_histories(session, vtxo_ids)
        return {vtxo_id: [state_of(r) for r in history] for vtxo_id, history in records.items()}

    @contextlib.asynccontextmanager
    async def _changing(self) -> AsyncIterator[None]:
        """Hold the cycle lock to change exits; the version moves on when done, changed or not."""
        async with self.cycle_lock:
            self._loaded = None  # the book no longer mirrors the rows it was read from
            try:
                yield
            finally:
                self.version += 1

    async def load(self) -> None:
        """Read every exit and its txs and children from the store into memory."""
        self._loaded = None
        self._loaded = await load_book(self.store, self.book)
        await self.claim_desk.load()
        self.book.reindex()
        self.heap.settle(len(self.exits))
        self.version += 1

    async def refresh(self) -> None:
        """Bring the exits in memory to what the store holds now, as load() would, reading only what can
        have changed since the last load or refresh (persist.refresh_book): a standby's reload and a new
        leader's takeover. A book this engine changed since (a cycle, a start) is read whole instead."""
        if self._loaded is None:
            await self.load()
            return
        last, self._loaded = self._loaded, None  # a refresh that fails leaves a book to read whole
        self._loaded = await refresh_book(self.store, self.book, last)
        await self.claim_desk.load()
        self.book.reindex()
        self.heap.grown(len(self.exits))  # a standby refreshes every few seconds: settled as it grows
        self.version += 1

    async def start(
        self, vtxo_ids: Sequence[str] | None, started_by: str = USER, force: bool = False
    ) -> StartReport:
        """Start exits (all spendable VTXOs when `vtxo_ids` is None); running exits are left as they are.
        Given ids are all started or, when one cannot be exited, none is; of all, those that can be.
        Unless `force`d, each exit must first be worth it and in time (exitd/engine/admission.py): a user's
        start naming VTXOs is refused whole with the figures (and when the wallet cannot pay for the first
        level, with what is missing and where to send it); other starts leave the refused ones out and say
        which. One transaction stores them all, so thousands of exits start in seconds. The report says
        which started (restarted, when a cancelled exit starts again) and which not, and why."""
        if vtxo_ids is not None:
            ids = list(dict.fromkeys(vtxo_ids))
        else:
            ids = await self.vtxos.ids_in_state("spendable")
        refused: list[StartRefused] = []
        async with self._changing():
            state = ExitState(ExitStateKind.START, await tip_height(self.rpc))
            starts = await read_starts(
                self.vtxos, ids, self.exits, self.txs, state, started_by, now(), strict=vtxo_ids is not None
            )
            if starts.exits and not force:
                refused = await self.admission.admit_starts(
                    starts, strict=vtxo_ids is not None and started_by == USER
                )
            restarted = {e.vtxo_id for e in starts.exits if e.vtxo_id in self.exits}
            if starts.exits:
                await store_starts(self.store, starts.exits, starts.new_txs.values(), restarted)
                self.txs.update(starts.new_txs)
                for e in starts.exits:
                    self.book.add(e)
                    event(
                        log,
                        logging.INFO,
                        "exit_started",
                        vtxo=e.vtxo_id,
                        depth=len(e.txids),
                        started_by=e.started_by,
                    )
        if starts.exits:
            self.heap.grown(len(self.exits))
            self.wakeup.set()
        started = tuple(e.vtxo_id for e in starts.exits)
        restarts = tuple(v for v in started if v in restarted)
        return StartReport(started, restarts, tuple(starts.skipped), tuple(refused))

    async def admit(self, rows: Sequence[StoredVtxo]) -> Admissions:
        """What exiting each of `rows` would cost and recover now, for the fee estimate's verdicts."""
        return await self.admission.admit(rows)

    # The cycle.

    async def progress(self, fee_rate: int | None = None) -> ProgressReport:
        """The report of a cycle that starts after this call. Calls that arrive while such a cycle waits for
        the lock share it: fifty clients asking at once cost at most two cycles, not fifty in a row. The
        cycle is shielded, so a caller that goes away does not cancel it for the others."""
        report = await self._cycle(fee_rate, True)
        assert report is not None
        return report

    async def advance(self) -> None:
        """A cycle as the background loop runs it: shared as `progress` says, and no report made for it."""
        await self._cycle(None, False)

    async def _cycle(self, fee_rate: int | None, report: bool) -> ProgressReport | None:
        """A cycle that starts after this call, shared as `progress` says; its report when one of its
        callers wants it (a report names every exit: the background loop's cycles make none)."""
        pending = self._next_cycle.get(fee_rate)
        if pending is None:
            pending = NextCycle(asyncio.ensure_future(self._single_cycle(fee_rate)), report)
            self._next_cycle[fee_rate] = pending
        pending.report = pending.report or report
        return await asyncio.shield(pending.task)

    async def _single_cycle(self, fee_rate: int | None) -> ProgressReport | None:
        counters = self.counters
        async with self._changing():
            # Started: a caller from now on needs the next cycle.
            pending = self._next_cycle.pop(fee_rate)
            started = time.monotonic()
            counters.cycles_running += 1
            counters.max_concurrent_cycles = max(counters.max_concurrent_cycles, counters.cycles_running)
            try:
                await self.cycle.run(fee_rate)
                return self.book.report() if pending.report else None
            except Exception:
                counters.cycle_errors += 1
                raise
            finally:
                counters.cycles_running -= 1
                seconds = time.monotonic() - started
                counters.cycle_seconds += seconds
                counters.cycle_durations.add(seconds)

    # Claims.

    async def price_claim(self, vtxo_ids: Sequence[str], target: int, max_rate: int | None = None) -> int:
        """The market's rate for one claim of these claimable exits (ClaimDesk.price), at most `max_rate`
        (None: the fee policy's ceiling). Reads only: no lock."""
        return await self.claim_requests.price(vtxo_ids, target, max_rate)

    async def hold_claims(self, vtxo_ids: Sequence[str], error: ClaimHeld) -> None:
        """Keep on these exits, while claimable, why automatic claims leave them alone (stored, so that a
        status and a restart see it)."""
        async with self._changing():
            await self.claim_requests.hold(vtxo_ids, error)

    async def claim(
        self,
        vtxo_ids: Sequence[str] | None,
        destination: bytes,
        fee_rate: int | None,
        preimages: dict[str, bytes] | None = None,
    ) -> ClaimBroadcast:
        """Broadcast one claim tx for the given (or all) claimable exits, at `fee_rate` raised to the node's
        floor, or without one at the market's (price_claim, REQUEST_CLAIM_TARGET). Of all, one whose claim
        cannot be signed here (its key not held, an HTLC preimage missing) is left out and named; given
        ones are claimed all or none. The claim tx is stored before it is broadcast
        (exitd/engine/claim_desk.py); one the node refuses for its fee still puts the exits in
        claim-in-progress, and a later block reprices it. Returns what it spent and paid, or would pay once
        repriced."""
        async with self._changing():
            return await self.claim_requests.claim(vtxo_ids, destination, fee_rate, preimages)

    # Fee estimate (barkd 0.6.0).

    async def estimate(
        self, rows: Sequence[StoredVtxo], fee_rate: int | None, destination: bytes, confirmed_balance: int
    ) -> FeeEstimate:
        """What exiting `rows` still costs, with the exit txs this engine has in flight for the plan."""
        return await estimate_exit(
            self.view, self.fees, self.cycle.planned, rows, fee_rate, destination, confirmed_balance
        )

    # Cancel (barkd 0.6.0).

    async def cancel(self, vtxo_id: str) -> None:
        """Cancel an exit whose leaf is not broadcast yet; our stored children of txs no other exit needs
        are abandoned and their coins freed, and the VTXO is spendable again."""
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
            await persist_states(self.store, [(e, ExitState(ExitStateKind.CANCELED, snap.tip.height))])
            still_needed = self.book.still_needed()
            dropped = [
                c
                for t in e.txids
                if t not in still_needed
                for c in self.txs[t].children.values()
                if c.status is ChildStatus.STORED
            ]
            for c in dropped:
                c.status = ChildStatus.ABANDONED
            async with self.store.session(fenced=True) as session:
                await set_vtxos_state(session, [vtxo_id], "spendable")
            await save_children(self.store, self.wallet, dropped, release=dropped)
            event(log, logging.INFO, "exit_canceled", vtxo=vtxo_id)

    # Background.

    async def run(
        self, stopping: asyncio.Event, poll_interval: float = 1.0, cycle_interval: float = 30.0
    ) -> None:
        """Advance exits on every new block, on a timer and when woken (exitd/chain/watcher.py)."""
        await self.watcher.run(stopping, self._background_cycle, poll_interval, cycle_interval)

    async def _background_cycle(self) -> bool:
        """A cycle of the background loop: whatever fails is logged, never raised into the loop."""
        try:
            await self.advance()
            return True
        except RpcError as e:
            event(log, logging.WARNING, "cycle_failed", error=str(e))
        except Exception as e:
            if self.store.stepped_down(e):  # lost leadership: the daemon stands by, nothing to debug
                event(log, logging.WARNING, "cycle_stopped", error=str(e) or type(e).__name__)
            elif isinstance(e, sa.exc.OperationalError):
                event(log, logging.ERROR, "cycle_failed", error=f"database: {e.orig}")
            else:
                log.exception("cycle_crashed")
        return False

    async def wait_for_block(self, timeout: float) -> None:
        await self.watcher.wait_for_block(timeout)

    # Counters, for /metrics.

    @property
    def packages_broadcast(self) -> int:
        return self.counters.packages_broadcast

    @property
    def cpfp_fees_paid(self) -> int:
        return self.counters.cpfp_fees_paid

    @property
    def claim_fees_paid(self) -> int:
        return self.counters.claim_fees_paid

    @property
    def cycles(self) -> int:
        return self.counters.cycles

    @property
    def cycle_errors(self) -> int:
        return self.counters.cycle_errors

    @property
    def cycle_seconds(self) -> float:
        return self.counters.cycle_seconds

    @property
    def max_concurrent_cycles(self) -> int:
        return self.counters.max_concurrent_cycles
