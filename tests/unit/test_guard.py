"""Guard mode's decisions: when the expiry guard starts an exit, what counts as a foreign broadcast, and
which alerts a cycle raises; the guard runs here over a stand-in engine and bark's own VTXOs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from exitd.ark.vtxo import decode_vtxo
from exitd.chain.fees import FeeRates, Market, RelayPolicy
from exitd.chain.view import BlockRef, ChainSnapshot, TxLocation, TxState
from exitd.engine.alerts import Alert, AlertEvent, Alerts, WebhookSettings
from exitd.engine.errors import (
    ClaimFeeExceedsOutput,
    ClaimHeld,
    ClaimMarketUnknown,
    FeeBudgetExceeded,
    InsufficientConfirmedFunds,
)
from exitd.engine.fee_policy import FeePolicy, exit_fee_estimate
from exitd.engine.guard import (
    STALL_BLOCKS,
    Guard,
    GuardedVtxo,
    GuardSettings,
    Verdict,
    at_risk,
    exit_stage,
    expiry_verdict,
    foreign_txid,
    guard_margin,
    guarded_vtxo,
    is_due,
    stall_reason,
    still_held,
)
from exitd.engine.model import ChildRecord, ChildSource, ChildStatus, ExitBook, LiveExit, TrackedTx
from exitd.engine.outcomes import ClaimBroadcast, StartReport
from exitd.engine.states import ExitState, ExitStateKind, ExitTx, ExitTxStatus, TxStatusKind
from exitd.store.vtxos import StoredVtxo, VtxoState
from tests.support.vectors import vector

BLOCK = BlockRef(100, "00" * 32)
TXIDS = ("aa" * 32, "bb" * 32, "cc" * 32)


def chain(expiry_height: int = 1000, exit_delta: int = 12, amount: int = 100_000) -> GuardedVtxo:
    return GuardedVtxo("dd" * 32 + ":0", amount, expiry_height, exit_delta, TXIDS, (150, 150, 120), (0, 0, 0))


def test_margin_is_depth_plus_delta_plus_slack() -> None:
    assert guard_margin(exit_depth=3, exit_delta=12, slack_blocks=144) == 159
    vtxo = chain(expiry_height=1000)
    assert not is_due(1000 - 160, vtxo, 144)
    assert is_due(1000 - 159, vtxo, 144)
    assert is_due(2000, vtxo, 144)


def test_exit_fee_is_a_package_per_level_rounded_up() -> None:
    # (150 + 153) vB at 2000 sat/kvB = 606 sat; (120 + 153) vB = 546 sat
    assert exit_fee_estimate(2000, [150, 120]) == 606 + 546
    assert exit_fee_estimate(1001, [1]) == 155  # 154.154 sat, rounded up
    assert exit_fee_estimate(2000, []) == 0


def test_verdicts() -> None:
    def verdict(tip: int = 900, amount: int = 10_000, min_amount: int = 0, fee: int = 100) -> Verdict:
        return expiry_verdict(tip, 1000, amount, min_amount, fee, budget=5000)

    assert verdict() is Verdict.START
    assert verdict(tip=1000) is Verdict.EXPIRED
    assert verdict(tip=999) is Verdict.START
    assert verdict(min_amount=20_000) is Verdict.BELOW_MIN_AMOUNT
    assert verdict(amount=329) is Verdict.BELOW_MIN_AMOUNT  # dust is never exited
    assert verdict(fee=5001) is Verdict.OVER_BUDGET
    assert verdict(fee=5000) is Verdict.START


def test_at_risk_when_the_fee_policy_deadline_is_out_of_reach() -> None:
    # 3 levels, margin 6: the last level must be in by 994, so at least 3 blocks from the tip are needed.
    assert not at_risk(tip=991, expiry_height=1000, levels_left=3, expiry_margin=6)
    assert at_risk(tip=992, expiry_height=1000, levels_left=3, expiry_margin=6)
    assert not at_risk(tip=2000, expiry_height=1000, levels_left=0, expiry_margin=6)


def test_foreign_is_the_first_tx_seen_that_exitd_did_not_broadcast() -> None:
    root, node, leaf = TXIDS
    assert foreign_txid(TXIDS, present=set(), ours=set()) is None
    assert foreign_txid(TXIDS, present={root, node}, ours=set()) == root
    assert foreign_txid(TXIDS, present={root, node}, ours={root}) == node
    assert foreign_txid(TXIDS, present={root}, ours={root}) is None
    assert foreign_txid(TXIDS, present={leaf}, ours=set()) == leaf


def test_stage_counts_confirmed_levels_while_processing() -> None:
    confirmed = ExitTxStatus(TxStatusKind.CONFIRMED, child_txid="", block=BLOCK)
    waiting = ExitTxStatus(TxStatusKind.NEEDS_SIGNED_PACKAGE)
    txs = (ExitTx(TXIDS[0], confirmed), ExitTx(TXIDS[1], waiting), ExitTx(TXIDS[2], waiting))
    assert exit_stage(ExitState(ExitStateKind.PROCESSING, 101, transactions=txs)) == "processing:1"
    assert exit_stage(ExitState(ExitStateKind.START, 100)) == "start"
    assert exit_stage(ExitState(ExitStateKind.CLAIMABLE, 120, claimable_since=BLOCK)) == "claimable"


# The guard over a stand-in engine.


def test_an_exit_is_stalled_only_when_a_level_could_have_moved_for_six_blocks() -> None:
    def processing(*kinds: TxStatusKind) -> ExitState:
        txs = tuple(ExitTx(f"{i:02x}" * 32, ExitTxStatus(kind)) for i, kind in enumerate(kinds))
        return ExitState(ExitStateKind.PROCESSING, 100, transactions=txs)

    confirmed, needs = TxStatusKind.CONFIRMED, TxStatusKind.NEEDS_SIGNED_PACKAGE
    state = processing(confirmed, needs)
    assert stall_reason(state, None, 100 + STALL_BLOCKS - 1) is None  # not for long enough yet
    reason = stall_reason(state, None, 100 + STALL_BLOCKS)
    assert reason is not None and "01" * 32 in reason and "needs-signed-package" in reason
    poor = InsufficientConfirmedFunds(5000, 0)
    assert stall_reason(state, poor, 200) == str(poor)  # the error says why
    # Waiting in the mempool at the rate the fee policy chose is no stall; nor is an exit past processing.
    assert stall_reason(processing(confirmed, TxStatusKind.BROADCAST_WITH_CPFP), None, 200) is None
    assert stall_reason(ExitState(ExitStateKind.AWAITING_DELTA, 100), None, 200) is None


def vtxo_row(name: str) -> StoredVtxo:
    """One of bark's VTXOs as the VTXO book hands it out."""
    vtxo = decode_vtxo(vector(name).data)
    return StoredVtxo(
        vtxo_id=str(vtxo.id),
        encoded=vtxo.encode(),
        amount_sat=vtxo.amount,
        expiry_height=vtxo.expiry_height,
        exit_delta=vtxo.exit_delta,
        exit_depth=vtxo.exit_depth,
        policy_type=vtxo.policy.kind,
        user_pubkey="",
        server_pubkey=vtxo.server_pubkey.hex(),
        chain_anchor=str(vtxo.anchor_point),
        key_index=None,
        state=VtxoState.SPENDABLE,
        imported_at=0,
        preimage=None,
        source="import",
        protect=True,
        seen_state=None,
        seen_at=None,
        gone_at=None,
    )


@dataclass
class StubFees:
    fast: int = 2000
    relay_policy: RelayPolicy = field(default_factory=lambda: RelayPolicy(1000, 1000, 1000))

    async def rates(self) -> FeeRates:
        return FeeRates(self.fast, self.fast, self.fast, True)

    async def market(self, blocks: Iterable[int], next_block: int | None = None) -> Market:
        return Market(self.relay_policy, dict.fromkeys(blocks, self.fast), True)

    async def relay(self) -> RelayPolicy:
        return self.relay_policy


@dataclass
class StubBook:
    rows: list[StoredVtxo]

    async def guarded_ids(self, protect_imports: bool) -> list[str]:
        """Every spendable row: which VTXOs are guarded is the store's query (tests/integration)."""
        return [r.vtxo_id for r in self.rows if r.state == "spendable"]

    async def get_many(self, vtxo_ids: Sequence[str]) -> list[StoredVtxo]:
        by_id = {r.vtxo_id: r for r in self.rows}
        return [by_id[i] for i in vtxo_ids]


@dataclass
class StubEngine:
    """The engine's real book (what the guard reads), and starts recorded instead of made."""

    book: ExitBook = field(default_factory=ExitBook)
    policy: FeePolicy = field(default_factory=FeePolicy)
    fees: StubFees = field(default_factory=StubFees)
    started: list[tuple[list[str], str]] = field(default_factory=list)

    @property
    def exits(self) -> dict[str, LiveExit]:
        return self.book.exits

    @property
    def txs(self) -> dict[str, TrackedTx]:
        return self.book.txs

    async def start(self, vtxo_ids: Sequence[str], started_by: str) -> StartReport:
        self.started.append((list(vtxo_ids), started_by))
        return StartReport(tuple(vtxo_ids), (), ())

    async def claim(
        self, vtxo_ids: Sequence[str], destination: bytes, fee_rate: int | None
    ) -> ClaimBroadcast:
        raise AssertionError("no test here claims")


def make_guard(engine: StubEngine, rows: list[StoredVtxo], **settings: Any) -> Guard:
    alerts = Alerts(WebhookSettings("http://127.0.0.1:9/hook"))
    return Guard(
        engine.book,
        StubBook(rows),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        alerts,
        GuardSettings(**settings),
        "regtest",
        engine.fees,
        engine.policy,
    )


def snapshot(tip: int, seen: dict[str, TxState] | None = None) -> ChainSnapshot:
    where = {
        txid: TxLocation(state, BLOCK if state is TxState.CONFIRMED else None)
        for txid, state in (seen or {}).items()
    }
    return ChainSnapshot(BlockRef(tip, "11" * 32), txs=where)


def alerts_of(guard: Guard) -> list[Alert]:
    items = []
    while not guard.alerts.queue.empty():
        items.append(guard.alerts.queue.get_nowait())
    return items


async def cycle(guard: Guard, snap: ChainSnapshot) -> list[str]:
    """One cycle's view for the guard (a cycle that decided every exit); returns the txids it asked to
    watch."""
    txids = list(await guard.watched_txids())
    await guard.after_cycle(snap, list(guard.book.exits.values()))
    return txids


async def carry_out(guard: Guard, engine: StubEngine) -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(guard.run(stopping, engine))
    await asyncio.sleep(0.01)
    stopping.set()
    await task


async def test_a_chain_broadcast_by_someone_else_starts_the_exit() -> None:
    row = vtxo_row("round1_vtxo")
    engine = StubEngine()
    guard = make_guard(engine, [row])
    watched = await cycle(guard, snapshot(100))
    guarded = guarded_vtxo(row)
    assert guarded is not None and watched == list(guarded.txids) and len(watched) == 3
    assert alerts_of(guard) == [] and engine.started == []

    root, node, _ = guarded.txids
    await cycle(guard, snapshot(101, {root: TxState.CONFIRMED, node: TxState.MEMPOOL}))
    await carry_out(guard, engine)
    assert engine.started == [([row.vtxo_id], "foreign-broadcast")]
    seen, started = alerts_of(guard)
    assert (seen.event, seen.txid, seen.detail) == (
        AlertEvent.FOREIGN_BROADCAST_SEEN,
        root,
        {"chain_level": 1, "seen_in": "confirmed"},
    )
    assert started.event is AlertEvent.EXIT_STARTED_BY_GUARD
    assert started.detail is not None and started.detail["started_by"] == "foreign-broadcast"


async def test_a_shared_tx_exitd_broadcast_for_a_sibling_is_not_foreign() -> None:
    row = vtxo_row("round1_vtxo")
    guarded = guarded_vtxo(row)
    assert guarded is not None
    root = guarded.txids[0]
    engine = StubEngine()
    engine.txs[root] = TrackedTx(root, b"", 150, "ee" * 32, 1)
    engine.txs[root].children["ff" * 32] = ChildRecord(
        "ff" * 32, root, b"", 500, 150, 2000, ChildSource.WALLET, ChildStatus.CONFIRMED, BLOCK
    )
    guard = make_guard(engine, [row])
    await cycle(guard, snapshot(101, {root: TxState.CONFIRMED}))
    await carry_out(guard, engine)
    assert engine.started == [] and alerts_of(guard) == []


async def test_expiry_guard_starts_at_its_margin_and_not_before() -> None:
    row = vtxo_row("round1_vtxo")  # depth 3, delta 2016, expiry 101010
    margin = guard_margin(3, 2016, 10)
    engine = StubEngine()
    guard = make_guard(engine, [row], slack_blocks=10)
    await cycle(guard, snapshot(101010 - margin - 1))
    await carry_out(guard, engine)
    assert engine.started == []
    await cycle(guard, snapshot(101010 - margin))
    await carry_out(guard, engine)
    assert engine.started == [([row.vtxo_id], "expiry-guard")]
    (started,) = alerts_of(guard)
    assert started.detail == {"started_by": "expiry-guard", "expiry_height": 101010, "blocks_left": margin}


async def test_a_vtxo_over_its_fee_budget_is_reported_once_and_left_alone() -> None:
    row = vtxo_row("round1_vtxo")  # 10,000 sat: a budget of 5,000 sat
    engine = StubEngine(fees=StubFees(fast=50_000))  # three packages at 50 sat/vB: far over it
    guard = make_guard(engine, [row], slack_blocks=10)
    for tip in (100_000, 100_001):
        await cycle(guard, snapshot(tip))
        await carry_out(guard, engine)
    assert engine.started == []
    (risk,) = alerts_of(guard)
    assert risk.event is AlertEvent.VTXO_AT_RISK and risk.detail is not None
    assert risk.detail["reason"] == "over-budget" and risk.detail["budget"] == 5000


def exiting(engine: StubEngine, vtxo_id: str, expiry_height: int = 101010, started_at: int = 99) -> LiveExit:
    """A three-level exit started at `started_at`, known to the stand-in engine."""
    state = ExitState(ExitStateKind.START, started_at)
    e = LiveExit(vtxo_id, 10_000, expiry_height, list(TXIDS), state, "user", 0)
    engine.exits[vtxo_id] = e
    return e


async def test_guard_off_watches_nothing_but_still_tells_of_exits() -> None:
    engine = StubEngine()
    poor, capped, late = (f"{i:02x}" * 32 + ":0" for i in (1, 2, 3))
    exiting(engine, poor, started_at=100_000).error = InsufficientConfirmedFunds(5000, 0)
    exiting(engine, capped, started_at=100_000).error = FeeBudgetExceeded(4000, 9000, 0.5)
    # Three levels, two blocks before the deadline.
    exiting(engine, late, expiry_height=100_000 + 6 + 2, started_at=100_000)
    guard = make_guard(engine, [vtxo_row("round1_vtxo")], enabled=False)
    assert await cycle(guard, snapshot(100_000)) == []
    await cycle(guard, snapshot(100_000))
    assert [(a.event, a.vtxo, a.detail) for a in alerts_of(guard)] == [
        (AlertEvent.WALLET_TOO_POOR, poor, {"needed": 5000, "available": 0}),
        (AlertEvent.FEE_BUDGET_HIT, capped, {"rate": 4000, "target": 9000}),
        (AlertEvent.VTXO_AT_RISK, late, {"reason": "late", "blocks_left": 8, "levels_left": 3}),
    ]


async def test_exits_loaded_claimed_are_not_announced_again() -> None:
    engine = StubEngine()
    vtxo_id = vtxo_row("board_vtxo").vtxo_id
    claimed = ExitState(ExitStateKind.CLAIMED, 120, claimable_since=BLOCK, txid="99" * 32, block=BLOCK)
    engine.exits[vtxo_id] = LiveExit(vtxo_id, 10_000, 101010, list(TXIDS[:1]), claimed, "user", 0)
    guard = make_guard(engine, [])
    guard.prime()
    await cycle(guard, snapshot(121))
    assert alerts_of(guard) == []


@dataclass
class ClaimingEngine(StubEngine):
    """Claims recorded as (vtxo ids, rate), each answered by the next error given (none: broadcast); the
    market prices a claim at `price` (an error: nobody can); a hold is kept on the book's exits, as the
    engine keeps it."""

    errors: list[Exception] = field(default_factory=list)
    claims: list[tuple[list[str], int | None]] = field(default_factory=list)
    price: int | ClaimMarketUnknown = 2000

    async def claim(
        self, vtxo_ids: Sequence[str], destination: bytes, fee_rate: int | None
    ) -> ClaimBroadcast:
        self.claims.append((list(vtxo_ids), fee_rate))
        if self.errors:
            raise self.errors.pop(0)
        for vtxo_id in vtxo_ids:
            e = self.exits[vtxo_id]
            e.state, e.error = replace(e.state, kind=ExitStateKind.CLAIM_IN_PROGRESS), None
        return ClaimBroadcast("99" * 32, tuple(vtxo_ids), 10_000, 500, ())

    async def price_claim(self, vtxo_ids: Sequence[str], target: int, max_rate: int | None = None) -> int:
        if isinstance(self.price, ClaimMarketUnknown):
            raise self.price
        return self.price

    async def hold_claims(self, vtxo_ids: Sequence[str], error: ClaimHeld) -> None:
        for vtxo_id in vtxo_ids:
            self.exits[vtxo_id].error = error


CLAIM_ADDRESS = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


def claimable_engine(errors: list[Exception]) -> tuple[ClaimingEngine, str]:
    engine = ClaimingEngine(errors=errors)
    vtxo_id = vtxo_row("board_vtxo").vtxo_id
    claimable = ExitState(ExitStateKind.CLAIMABLE, 120, claimable_since=BLOCK)
    engine.exits[vtxo_id] = LiveExit(vtxo_id, 10_000, 101010, list(TXIDS[:1]), claimable, "user", 0)
    return engine, vtxo_id


async def cycles(guard: Guard, engine: ClaimingEngine, tips: Iterable[int]) -> None:
    for tip in tips:
        await cycle(guard, snapshot(tip))
        await carry_out(guard, engine)


UNECONOMIC = ClaimFeeExceedsOutput(needed=12_000, output=10_000, rate=2000, fitting_rate=1500, floor=1000)


async def test_an_auto_claim_costing_more_than_its_output_is_held_with_one_alert() -> None:
    engine, vtxo_id = claimable_engine([UNECONOMIC])
    guard = make_guard(engine, [], claim_address=CLAIM_ADDRESS)
    guard.prime()
    await cycles(guard, engine, [121, 122, 123])
    assert engine.claims == [([vtxo_id], 2000)]
    assert engine.exits[vtxo_id].error is UNECONOMIC  # what a status shows, and the store keeps
    [alert] = alerts_of(guard)
    assert (alert.event, alert.vtxo) == (AlertEvent.CLAIM_COSTS_MORE_THAN_OUTPUT, vtxo_id)
    assert {k: alert.detail[k] for k in ("rate", "needed", "output", "fitting_rate", "floor")} == {
        "rate": 2000,
        "needed": 12_000,
        "output": 10_000,
        "fitting_rate": 1500,
        "floor": 1000,
    }


async def test_a_held_uneconomic_claim_stays_held_after_a_restart_and_goes_when_the_market_can_pay() -> None:
    engine, vtxo_id = claimable_engine([])
    engine.exits[vtxo_id].error = UNECONOMIC  # as the store gives it back at load
    guard = make_guard(engine, [], claim_address=CLAIM_ADDRESS)  # a new daemon's guard
    guard.prime()
    await cycles(guard, engine, [130, 131])
    assert engine.claims == [] and alerts_of(guard) == []  # no retry, no second alert
    engine.price = 1500  # the most the output pays
    await cycles(guard, engine, [132])
    assert engine.claims == [([vtxo_id], 1500)]
    assert engine.exits[vtxo_id].error is None


async def test_with_no_market_an_auto_claim_waits_with_the_reason_then_goes() -> None:
    engine, vtxo_id = claimable_engine([])
    engine.price = ClaimMarketUnknown(144, 25_000)
    guard = make_guard(engine, [], claim_address=CLAIM_ADDRESS)
    guard.prime()
    await cycles(guard, engine, [121, 122, 123])
    assert engine.claims == []
    assert isinstance(engine.exits[vtxo_id].error, ClaimMarketUnknown)
    assert [(a.event, a.vtxo) for a in alerts_of(guard)] == [(AlertEvent.CLAIM_WAITS_FOR_MARKET, vtxo_id)]
    engine.price = 1000
    await cycles(guard, engine, [124])
    assert engine.claims == [([vtxo_id], 1000)]


def test_only_a_claim_costing_more_than_its_output_is_held_at_a_rate() -> None:
    assert still_held(UNECONOMIC, 1501) and not still_held(UNECONOMIC, 1500)
    assert not still_held(ClaimMarketUnknown(144, None), 10**6)  # priced again every cycle
    assert not still_held(None, 10**6)
