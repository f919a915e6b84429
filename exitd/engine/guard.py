"""Guard mode: exitd protects imported VTXOs on its own, with nobody calling it in time.

The guard looks at every progress cycle's chain snapshot (it adds the exit txids of each imported VTXO
that is not exiting to the snapshot's request, so watching costs no extra round trip), decides with the
pure functions below, and acts in a task of its own once the cycle let go of the engine.

Expiry guard. A VTXO is lost when its `expiry_height` passes before its whole exit chain is confirmed
(the Ark server may then sweep the tree). The guard starts the exit of a VTXO that is not exiting when

    expiry_height - tip <= exit_depth + exit_delta + slack_blocks

- exit_depth: TRUC lets each chain have one unconfirmed level at a time, so d levels take at least d blocks;
- exit_delta: the VTXO's own reaction time (the CSV the server gave its users); starting one delta
  earlier gives the fee policy that many more blocks per level before it must escalate;
- slack_blocks (guard.slack_blocks, default 144, about a day): downtime, full blocks, a fee spike.
It starts only VTXOs of at least guard.min_amount (and never dust), and only when the exit's CPFP fees at
the current rate (bitcoind's ~1-block estimate, a package per level not yet in the mempool or the chain)
fit the fee budget, fees.budget_ratio of the amount. Otherwise, and for a VTXO already past its expiry
(the server may have swept it; an exit would race the sweep), it raises a vtxo-at-risk alert and leaves
the decision to the operator. A VTXO is also at risk when the fee policy's deadline can no longer be met,
even at one level per block: fewer than `levels left + fees.expiry_margin` blocks before its expiry.

Which VTXOs. A bark wallet's VTXOs churn: every payment spends one, every refresh forfeits the old one to
the server shortly before it expires. Exiting a VTXO the wallet already forfeited pays CPFP fees for an
output the server takes, and broadcasts a tree other users share. So the guard acts only on VTXOs that a
source of truth holds as the user's (the followed barkd lists them spendable or locked,
exitd/source/barkd.py), or that the user asked it to protect (imported with `protect`, or every import
with guard.protect_imports). A VTXO that only came by import is otherwise never exited unasked; a VTXO
barkd calls spent or exited, or that the user marked gone, never. When barkd cannot be reached, the set it
last vouched for stays guarded: a wallet gone offline is when protection matters most.

Foreign exits. Any tx of a VTXO's exit chain in the mempool or the chain that exitd did not broadcast
(no child of exitd's wallet ever spent its anchor) means someone else started the exit: the Ark server,
another copy of the wallet, a stale backup, or the sender of an arkoor payment exiting the VTXO it paid
from. The guard starts that VTXO's exit (started_by foreign-broadcast); the engine picks up from where the
chain is, adopting others' children, and a chain already fully confirmed goes straight to awaiting-delta.

Auto-claim. With guard.claim_address set ("wallet": a new address of exitd's own wallet each time),
claimable exits are claimed in one batch per cycle at the market's rate (fee_policy.batch_claim_rate: for
CLAIM_TARGET blocks, at most guard.claim_max_rate, raised to the node's floor; an HTLC receive's claim
follows the CPFP curve towards its own deadline, up to fees.max_rate). An exit whose claim cannot be signed
here (the key is not held, an HTLC preimage is missing) is left to a claim request. A claim sent is the
engine's to follow, as a requested one (exitd/engine/replacement.py): refused for its fee, it is repriced on
a later block; stuck below the market, it is replaced.

Two reasons hold an exit's auto-claim, each kept on the exit as its error (stored: a status shows it and a
restart keeps it, errors.ClaimHeld) with one alert: no market (bitcoind has no estimate and a backlog
hides the market; `claim-waits-for-market`: the claim is priced again every cycle, a read, and goes out as
soon as a reading exists), and a fee that leaves no non-dust output (`claim-costs-more-than-output`, with
the figures: the claim is not tried again until the market's rate is at most the highest rate the output
pays). Terminal for the guard only: a claim request with its own fee_rate still claims the exit, since the
money is the user's to spend on fees if they choose.

guard.enabled = false turns off all three; the alerts about exits (exitd.engine.alerts) remain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bitcoin.core import b2lx

from exitd.ark.exit_tx import build_exit_chain
from exitd.ark.weight import tx_vsize
from exitd.chain.fees import FeeRates, Market, RelayPolicy
from exitd.chain.rpc import RpcError
from exitd.chain.view import ChainSnapshot, TxState
from exitd.engine.admission import Refusal
from exitd.engine.alerts import AlertEvent, Alerts
from exitd.engine.errors import (
    ClaimFeeExceedsOutput,
    ClaimHeld,
    ClaimMarketUnknown,
    ClaimMissingSignableClause,
    ExitError,
    FeeBudgetExceeded,
    InsufficientConfirmedFunds,
)
from exitd.engine.fee_policy import (
    CLAIM_TARGET,
    FeePolicy,
    blocks_per_level,
    exit_fee_estimate,
    fee_budget,
)
from exitd.engine.model import LiveExit
from exitd.engine.outcomes import ClaimBroadcast, StartReport
from exitd.engine.starts import P2TR_DUST
from exitd.engine.states import ExitState, ExitStateKind, TxStatusKind
from exitd.log import event, get_logger
from exitd.store.vtxos import StoredVtxo
from exitd.wallet.address import decode_address
from exitd.wallet.errors import NoWallet
from exitd.wallet.vtxos import VtxoBook

log = get_logger("guard")

# guard.claim_address meaning "a new address of exitd's own wallet".
WALLET_DESTINATION = "wallet"
# The state of a VTXO's alerts while it is not exiting.
NOT_EXITING = "not-exiting"


class StartedBy(StrEnum):
    """Why the guard started an exit (an exit started by a request says "user")."""

    EXPIRY_GUARD = "expiry-guard"
    FOREIGN_BROADCAST = "foreign-broadcast"


class Verdict(StrEnum):
    """What the expiry guard makes of a VTXO within its margin."""

    START = "start"
    EXPIRED = "expired"
    BELOW_MIN_AMOUNT = "below-min-amount"
    OVER_BUDGET = "over-budget"


@dataclass(frozen=True)
class GuardSettings:
    enabled: bool = True
    slack_blocks: int = 144
    min_amount: int = 0  # sat
    claim_address: str = ""  # "": no auto-claim; "wallet"; or an address of the network
    claim_max_rate: int = 20_000  # sat/kvB
    protect_imports: bool = False  # guard VTXOs no source vouches for, as if each was imported with protect


@dataclass(frozen=True)
class GuardedVtxo:
    """An imported VTXO that is not exiting, its exit chain rebuilt once: txids and vsizes, root first."""

    vtxo_id: str
    amount: int
    expiry_height: int
    exit_delta: int
    txids: tuple[str, ...]
    vsizes: tuple[int, ...]
    # Of each tx, the output the next level spends (the VTXO's own for the leaf): while the UTXO set holds
    # it, it shows where the tx was mined, even if that was before exitd watched it.
    outputs: tuple[int, ...]

    @property
    def exit_depth(self) -> int:
        return len(self.txids)


@dataclass(frozen=True)
class GuardStart:
    vtxo_id: str
    started_by: StartedBy
    tip: int
    expiry_height: int


@dataclass(frozen=True)
class GuardPlan:
    """What the guard decided after a cycle, carried out by its task."""

    starts: tuple[GuardStart, ...] = ()
    claims: tuple[str, ...] = ()


class AddressSource(Protocol):
    """exitd's on-chain wallet, as auto-claim to "wallet" uses it."""

    async def next_address(self) -> str: ...


class FeeSource(Protocol):
    async def rates(self) -> FeeRates: ...

    async def market(self, blocks: Iterable[int], next_block: int | None = None) -> Market: ...

    async def relay(self) -> RelayPolicy: ...


class ExitsView(Protocol):
    """The engine's book as the guard reads it (exitd.engine.model.ExitBook); never changed here."""

    @property
    def exits(self) -> Mapping[str, LiveExit]: ...

    def broadcast_by_exitd(self, txid: str) -> bool: ...


class ExitActor(Protocol):
    """The engine as the guard's task acts through it: as a request would, taking the engine's lock."""

    async def start(self, vtxo_ids: Sequence[str], started_by: str) -> StartReport: ...

    async def claim(
        self, vtxo_ids: Sequence[str], destination: bytes, fee_rate: int | None
    ) -> ClaimBroadcast: ...

    async def price_claim(self, vtxo_ids: Sequence[str], target: int, max_rate: int | None = None) -> int: ...

    async def hold_claims(self, vtxo_ids: Sequence[str], error: ClaimHeld) -> None: ...


def still_held(error: ClaimHeld | None, rate: int) -> bool:
    """Whether auto-claim still leaves an exit alone at the market's `rate`: one costing more than its
    output until the rate leaves a non-dust output; one waiting for a market is priced every cycle."""
    return isinstance(error, ClaimFeeExceedsOutput) and rate > error.fitting_rate


def held_alert(error: ClaimHeld) -> AlertEvent:
    if isinstance(error, ClaimFeeExceedsOutput):
        return AlertEvent.CLAIM_COSTS_MORE_THAN_OUTPUT
    return AlertEvent.CLAIM_WAITS_FOR_MARKET


def guard_margin(exit_depth: int, exit_delta: int, slack_blocks: int) -> int:
    """Blocks before expiry_height at which the expiry guard starts an exit."""
    return exit_depth + exit_delta + slack_blocks


def is_due(tip: int, vtxo: GuardedVtxo, slack_blocks: int) -> bool:
    return vtxo.expiry_height - tip <= guard_margin(vtxo.exit_depth, vtxo.exit_delta, slack_blocks)


def expiry_verdict(
    tip: int, expiry_height: int, amount: int, min_amount: int, exit_fee: int, budget: int
) -> Verdict:
    """Whether the expiry guard starts a VTXO that is due, and if not, why."""
    if expiry_height <= tip:
        return Verdict.EXPIRED
    if amount < max(min_amount, P2TR_DUST):
        return Verdict.BELOW_MIN_AMOUNT
    if exit_fee > budget:
        return Verdict.OVER_BUDGET
    return Verdict.START


def at_risk(tip: int, expiry_height: int, levels_left: int, expiry_margin: int) -> bool:
    """Even at one level per block the last level cannot be in by the fee policy's deadline."""
    return blocks_per_level(tip, expiry_height, levels_left, expiry_margin) < 1


def foreign_txid(txids: Sequence[str], present: Collection[str], ours: Collection[str]) -> str | None:
    """The first tx of a chain that is in the mempool or the chain without exitd having broadcast it."""
    return next((txid for txid in txids if txid in present and txid not in ours), None)


# Blocks an exit in progress may go without any change of state, while a level of it is neither in the
# mempool nor the chain, before an exit-stalled alert says why (each level can confirm in the next block).
STALL_BLOCKS = 6


def stall_reason(state: ExitState, error: ExitError | None, tip: int) -> str | None:
    """Why an exit in progress has made no progress for STALL_BLOCKS blocks although it could have, or
    None. A level waiting in the mempool at the rate the fee policy chose is not stalled: the policy raises
    the rate towards the deadline, and vtxo-at-risk speaks when the deadline is near."""
    if state.kind not in (ExitStateKind.START, ExitStateKind.PROCESSING):
        return None
    if tip - state.tip_height < STALL_BLOCKS:
        return None
    if error is not None:
        return str(error)
    waiting = next((tx for tx in state.transactions if tx.status.kind is not TxStatusKind.CONFIRMED), None)
    if waiting is None:
        return "no exit tx looked at yet" if state.kind is ExitStateKind.START else None
    if waiting.status.kind is TxStatusKind.BROADCAST_WITH_CPFP:
        return None
    return (
        f"exit tx {waiting.txid} is {waiting.status.kind.value}: it is neither in the mempool nor the chain"
    )


def exit_stage(state: ExitState) -> str:
    """Where an exit is, as alerts are deduplicated: its kind, and while processing the levels confirmed
    (a wallet too poor for level 3 is news again after it was too poor for level 2)."""
    if state.kind is ExitStateKind.PROCESSING:
        confirmed = sum(1 for tx in state.transactions if tx.status.kind is TxStatusKind.CONFIRMED)
        return f"processing:{confirmed}"
    return state.kind.value


def guarded_vtxo(row: StoredVtxo) -> GuardedVtxo | None:
    """The VTXO with its exit chain, or None for an unfinished one (nobody can broadcast its chain)."""
    vtxo = row.vtxo
    if vtxo.is_unfinished:
        return None
    txs = build_exit_chain(vtxo).txs
    return GuardedVtxo(
        row.vtxo_id,
        row.amount_sat,
        row.expiry_height,
        row.exit_delta,
        tuple(b2lx(t.txid) for t in txs),
        tuple(tx_vsize(t.tx) for t in txs),
        (*(int(t.tx.vin[0].prevout.n) for t in txs[1:]), vtxo.point.vout),
    )


class Guard:
    def __init__(
        self,
        book: ExitsView,
        vtxos: VtxoBook,
        wallet: AddressSource,
        alerts: Alerts,
        settings: GuardSettings,
        network: str,
        fees: FeeSource,
        policy: FeePolicy,
    ) -> None:
        self.book = book
        self.fees = fees
        self.policy = policy
        self.vtxos = vtxos
        self.wallet = wallet
        self.alerts = alerts
        self.settings = settings
        self.network = network
        # Guarded VTXOs not exiting, by id (None: unfinished); rebuilt only for VTXOs new to the guard.
        self._chains: dict[str, GuardedVtxo | None] = {}
        self._plan = GuardPlan()
        self._due = asyncio.Event()
        self._unclaimable: set[str] = set()

    def prime(self) -> None:
        """After the engine loaded its exits: those already claimable or claimed were announced before."""
        for e in self.book.exits.values():
            kind = e.state.kind
            if kind in (ExitStateKind.CLAIMABLE, ExitStateKind.CLAIM_IN_PROGRESS, ExitStateKind.CLAIMED):
                self.alerts.mark_sent(AlertEvent.EXIT_CLAIMABLE, e.vtxo_id, ExitStateKind.CLAIMABLE.value)
            if kind is ExitStateKind.CLAIMED:
                self.alerts.mark_sent(AlertEvent.EXIT_CLAIMED, e.vtxo_id, ExitStateKind.CLAIMED.value)
            held = e.held_claim
            if held is not None:
                self.alerts.mark_sent(held_alert(held), e.vtxo_id, ExitStateKind.CLAIMABLE.value)

    # In the cycle (the engine's lock is held: decide, never wait on the engine).

    async def watched_txids(self) -> dict[str, int]:
        """The exit txids of every guarded VTXO that is not exiting, for this cycle's snapshot, each with
        the output that places it if it was mined before (GuardedVtxo.outputs)."""
        if not self.settings.enabled:
            return {}
        # Ids only, and rows only for VTXOs new to the guard: every cycle reads this, and every row
        # (encoded VTXO included) would be a tenth of a second per cycle at a thousand VTXOs.
        ids = await self.vtxos.guarded_ids(self.settings.protect_imports)
        new = [i for i in ids if i not in self._chains]
        rows = {r.vtxo_id: r for r in await self.vtxos.get_many(new)} if new else {}
        self._chains = {i: self._chains[i] if i in self._chains else guarded_vtxo(rows[i]) for i in ids}
        return {txid: vout for v in self._guarded() for txid, vout in zip(v.txids, v.outputs, strict=True)}

    async def after_cycle(self, snap: ChainSnapshot, decided: Sequence[LiveExit]) -> None:
        """`decided`: the exits the cycle decided. The others rest (exitd/engine/rest.py): none is
        claimable, and the alerts of their states were raised when a cycle put them there."""
        self._alert_exits(snap, decided)
        if not self.settings.enabled:
            return
        starts = self._foreign_starts(snap)
        starts += await self._expiry_starts(snap, {s.vtxo_id for s in starts})
        claims = self._claimable(decided) if self.settings.claim_address else []
        if starts or claims:
            self._plan = GuardPlan(tuple(starts), tuple(claims))
            self._due.set()

    def _guarded(self) -> list[GuardedVtxo]:
        return [v for v in self._chains.values() if v is not None]

    def _alert_exits(self, snap: ChainSnapshot, exits: Iterable[LiveExit]) -> None:
        """Raise, once each, the alerts the exits' states and errors call for."""
        for e in exits:
            stage = exit_stage(e.state)
            if e.state.kind in (ExitStateKind.START, ExitStateKind.PROCESSING):
                self._alert_in_flight(snap, e, stage)
            else:
                self._alert_outcome(e, stage)
            self._alert_error(e, stage)

    def _alert_outcome(self, e: LiveExit, stage: str) -> None:
        """An exit that reached its end or the claim: claimable, claimed, or its VTXO spent by another tx."""
        state = e.state
        if state.kind is ExitStateKind.CLAIMABLE:
            assert state.claimable_since is not None
            self.alerts.raise_once(
                AlertEvent.EXIT_CLAIMABLE,
                e.vtxo_id,
                stage,
                amount=e.amount,
                claimable_height=state.claimable_since.height,
            )
        elif state.kind is ExitStateKind.CLAIMED:
            assert state.block is not None
            self.alerts.raise_once(
                AlertEvent.EXIT_CLAIMED,
                e.vtxo_id,
                stage,
                txid=state.txid,
                block_height=state.block.height,
            )
        elif state.kind is ExitStateKind.VTXO_ALREADY_SPENT:
            assert state.block is not None and state.spent_input is not None
            self.alerts.raise_once(
                AlertEvent.EXIT_CONFLICTED,
                e.vtxo_id,
                f"{stage}:{state.txid}",
                txid=state.txid,
                spent_input=state.spent_input,
                block_height=state.block.height,
            )

    def _alert_in_flight(self, snap: ChainSnapshot, e: LiveExit, stage: str) -> None:
        """An exit still broadcasting its levels: stalled, or too late for its expiry."""
        tip, state = snap.tip.height, e.state
        reason = stall_reason(state, e.error, tip)
        if reason is not None:
            self.alerts.raise_once(
                AlertEvent.EXIT_STALLED,
                e.vtxo_id,
                stage,
                blocks=tip - state.tip_height,
                reason=reason,
            )
        levels_left = e.levels_left(snap)
        if at_risk(tip, e.expiry_height, levels_left, self.policy.expiry_margin):
            self.alerts.raise_once(
                AlertEvent.VTXO_AT_RISK,
                e.vtxo_id,
                stage,
                reason="late",
                blocks_left=e.expiry_height - tip,
                levels_left=levels_left,
            )

    def _alert_error(self, e: LiveExit, stage: str) -> None:
        """An exit the wallet or the fee budget holds back."""
        error = e.error
        if isinstance(error, InsufficientConfirmedFunds):
            self.alerts.raise_once(
                AlertEvent.WALLET_TOO_POOR,
                e.vtxo_id,
                stage,
                needed=error.fields["needed"],
                available=error.fields["available"],
            )
        elif isinstance(error, FeeBudgetExceeded):
            self.alerts.raise_once(
                AlertEvent.FEE_BUDGET_HIT, e.vtxo_id, stage, rate=error.rate, target=error.target
            )

    def _foreign_starts(self, snap: ChainSnapshot) -> list[GuardStart]:
        guarded = self._guarded()
        present = {
            txid for v in guarded for txid in v.txids if snap.location(txid).state is not TxState.NOT_FOUND
        }
        ours = {txid for txid in present if self.book.broadcast_by_exitd(txid)}
        starts = []
        for v in guarded:
            txid = foreign_txid(v.txids, present, ours)
            if txid is None:
                continue
            self.alerts.raise_once(
                AlertEvent.FOREIGN_BROADCAST_SEEN,
                v.vtxo_id,
                NOT_EXITING,
                txid=txid,
                chain_level=v.txids.index(txid) + 1,
                seen_in=snap.location(txid).state.value,
            )
            starts.append(
                GuardStart(v.vtxo_id, StartedBy.FOREIGN_BROADCAST, snap.tip.height, v.expiry_height)
            )
        return starts

    async def _expiry_starts(self, snap: ChainSnapshot, starting: set[str]) -> list[GuardStart]:
        tip = snap.tip.height
        due = [
            v
            for v in self._guarded()
            if v.vtxo_id not in starting and is_due(tip, v, self.settings.slack_blocks)
        ]
        if not due:
            return []
        try:
            rate = (await self.fees.rates()).fast
        except RpcError as e:
            event(log, logging.WARNING, "guard_fee_estimate_failed", error=str(e))
            return []
        policy = self.policy
        starts = []
        for v in due:
            unbroadcast = [
                vsize
                for txid, vsize in zip(v.txids, v.vsizes, strict=True)
                if snap.location(txid).state is TxState.NOT_FOUND
            ]
            fee, budget = exit_fee_estimate(rate, unbroadcast), fee_budget(v.amount, policy)
            verdict = expiry_verdict(tip, v.expiry_height, v.amount, self.settings.min_amount, fee, budget)
            late = at_risk(tip, v.expiry_height, v.exit_depth, policy.expiry_margin)
            if verdict is Verdict.START:
                starts.append(GuardStart(v.vtxo_id, StartedBy.EXPIRY_GUARD, tip, v.expiry_height))
            if verdict is not Verdict.START or late:
                reason = verdict.value if verdict is not Verdict.START else "late"
                self.alerts.raise_once(
                    AlertEvent.VTXO_AT_RISK,
                    v.vtxo_id,
                    f"{NOT_EXITING}:{reason}",
                    reason=reason,
                    blocks_left=v.expiry_height - tip,
                    levels_left=v.exit_depth,
                    exit_fee=fee,
                    budget=budget,
                )
        return starts

    def _claimable(self, exits: Iterable[LiveExit]) -> list[str]:
        """Claimable exits to claim now: those not unclaimable here."""
        return [
            e.vtxo_id
            for e in exits
            if e.state.kind is ExitStateKind.CLAIMABLE and e.vtxo_id not in self._unclaimable
        ]

    # The guard's task (the engine's lock is free: start and claim as a request would).

    async def run(self, stopping: asyncio.Event, engine: ExitActor) -> None:
        """Carry out each cycle's plan through `engine` as soon as the cycle is over, until `stopping`."""
        stop = asyncio.ensure_future(stopping.wait())
        try:
            while True:
                due = asyncio.ensure_future(self._due.wait())
                await asyncio.wait({due, stop}, return_when=asyncio.FIRST_COMPLETED)
                if stopping.is_set():
                    due.cancel()
                    return
                await self.act(engine)
        finally:
            stop.cancel()

    async def act(self, engine: ExitActor) -> None:
        """Carry out the last cycle's plan (run() does after every cycle; a benchmark driving cycles
        itself calls it)."""
        self._due.clear()
        plan, self._plan = self._plan, GuardPlan()
        try:
            await self._start(engine, plan.starts)
            await self._claim(engine, list(plan.claims))
        except Exception:
            log.exception("guard_crashed")

    async def _start(self, engine: ExitActor, starts: Sequence[GuardStart]) -> None:
        for reason in StartedBy:
            group = [s for s in starts if s.started_by is reason]
            if not group:
                continue
            try:
                report = await engine.start([s.vtxo_id for s in group], reason.value)
                started = set(report.started)
            except (ExitError, RpcError, LookupError) as e:
                event(log, logging.WARNING, "guard_start_failed", started_by=reason.value, error=str(e))
                continue
            for refused in report.refused:
                # Never forced: a loss or a lost race is the operator's call (a start with "force").
                alert = (
                    AlertEvent.VTXO_NOT_WORTH_EXITING
                    if refused.reason == Refusal.NOT_WORTH_IT
                    else AlertEvent.VTXO_AT_RISK
                )
                self.alerts.raise_once(
                    alert, refused.vtxo_id, f"{NOT_EXITING}:{refused.reason}", reason=str(refused)
                )
            for s in group:
                if s.vtxo_id in started:
                    self.alerts.raise_once(
                        AlertEvent.EXIT_STARTED_BY_GUARD,
                        s.vtxo_id,
                        f"{reason.value}@{s.tip}",
                        started_by=reason.value,
                        expiry_height=s.expiry_height,
                        blocks_left=s.expiry_height - s.tip,
                    )

    async def _claim(self, engine: ExitActor, vtxo_ids: list[str]) -> None:
        """One claim of every claimable exit; an exit whose claim cannot be signed here is left out, and
        one held for costing more than its output while the market's rate still does."""
        if not vtxo_ids:
            return
        try:
            destination = await self._claim_destination()
            rate = await engine.price_claim(vtxo_ids, CLAIM_TARGET, self.settings.claim_max_rate)
            rate = (await self.fees.relay()).raised(rate)
        except ClaimMarketUnknown as e:
            await self._hold(engine, vtxo_ids, e)
            return
        except (RpcError, NoWallet) as e:
            event(log, logging.WARNING, "auto_claim_failed", exits=len(vtxo_ids), error=str(e))
            return
        exits = self.book.exits
        vtxo_ids = [i for i in vtxo_ids if not still_held(exits[i].held_claim, rate)]
        while vtxo_ids:
            try:
                await engine.claim(vtxo_ids, destination, rate)
                return
            except ClaimMissingSignableClause as e:
                vtxo_id = str(e.fields["vtxo"])
                self._unclaimable.add(vtxo_id)
                vtxo_ids.remove(vtxo_id)
                event(log, logging.WARNING, "auto_claim_skipped", vtxo=vtxo_id, error=str(e))
            except ClaimFeeExceedsOutput as e:
                await self._hold(engine, vtxo_ids, e)
                return
            except (ExitError, RpcError) as e:
                event(log, logging.WARNING, "auto_claim_failed", exits=len(vtxo_ids), error=str(e))
                return

    async def _hold(self, engine: ExitActor, vtxo_ids: Sequence[str], error: ClaimHeld) -> None:
        """Keep why these exits' auto-claim waits on them, and say it once per exit."""
        await engine.hold_claims(vtxo_ids, error)
        for vtxo_id in vtxo_ids:
            self.alerts.raise_once(
                held_alert(error), vtxo_id, ExitStateKind.CLAIMABLE.value, reason=str(error), **error.fields
            )

    async def _claim_destination(self) -> bytes:
        address = self.settings.claim_address
        if address == WALLET_DESTINATION:
            address = await self.wallet.next_address()
        return decode_address(address, self.network)
