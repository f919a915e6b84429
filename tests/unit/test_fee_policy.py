from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar

from exitd.chain.fees import (
    SPIKE_BLOCKS,
    FeeEstimator,
    Market,
    NextBlockMemory,
    RelayPolicy,
    Speed,
    confirmation_target,
    fee_at_rate,
    has_backlog,
    is_rising,
    relay_policy,
    sat_per_vb_ceil,
    template_cutoff,
)
from exitd.engine.fee_policy import (
    CLAIM_TARGET,
    SPIKE_PATIENCE,
    URGENT_SLACK,
    FeePolicy,
    LevelMarket,
    RaisedRate,
    batch_claim_rate,
    blocks_per_level,
    budget_capped_rate,
    claim_rate,
    claim_targets,
    deadline_rate,
    fee_budget,
    htlc_claim_rate,
    level_target,
    refused_for_fee,
    repriced_claim_rate,
    slack,
)

POLICY = FeePolicy(max_rate=100_000, expiry_margin=2, budget_ratio=0.5)
GUARD_SLACK = 144  # guard.slack_blocks' default
EXIT_DELTA = 12


def market(blocks: int) -> int:
    """A market where waiting is cheaper: 20 sat/vB for the next block, falling to 2 sat/vB."""
    return max(2_000, 20_000 // blocks)


def rate_at(
    tip: int, expiry: int, levels: int, next_block: int | None = None, usual: int | None = None
) -> int:
    """The rate of a level; `usual` given: during a spike."""
    target = level_target(tip, expiry, levels, POLICY)
    asked = LevelMarket(market(target), next_block, usual, spike=usual is not None)
    return deadline_rate(asked, tip, expiry, levels, POLICY)


def test_an_exit_started_by_the_guard_pays_the_market_on_every_level() -> None:
    """The guard starts an exit depth + exit_delta + slack blocks before expiry. Every level then has tens
    of blocks and pays the market, level after level: the estimate for that many blocks without a block
    template, what enters the next block with one (the curve that escalated below a fixed 144-block
    window paid 165 times the market here)."""
    policy = FeePolicy()  # the defaults
    for depth in (1, 3, 5):
        start = 1000
        expiry = start + depth + EXIT_DELTA + GUARD_SLACK
        tip = start
        for levels in range(depth, 0, -1):  # each level confirms in the next block
            target = level_target(tip, expiry, levels, policy)
            assert target >= (EXIT_DELTA + GUARD_SLACK - policy.expiry_margin) // depth
            assert deadline_rate(LevelMarket(2_000), tip, expiry, levels, policy) == 2_000
            assert deadline_rate(LevelMarket(9_000, 2_000), tip, expiry, levels, policy) == 2_000
            tip += 1


def test_the_target_is_the_blocks_each_level_has() -> None:
    # 150 blocks before the margin, 3 levels: 50 blocks for the level in flight.
    assert blocks_per_level(100, 100 + 2 + 150, 3, 2) == 50
    assert level_target(100, 100 + 2 + 150, 3, POLICY) == 50
    # estimatesmartfee's range: never below 1 block, never past 1008.
    assert level_target(100, 90, 3, POLICY) == 1
    assert level_target(100, 100_000, 1, POLICY) == 1008
    assert confirmation_target(0) == 1 and confirmation_target(-5) == 1 and confirmation_target(2016) == 1008


def test_the_rate_rises_only_as_slack_is_used_up() -> None:
    """One level waiting block after block, the node giving no template: its target shrinks with the
    blocks left, so the rate follows what the market asks for the shorter wait, and nothing more, until
    there is no slack at all."""
    expiry = 100 + 2 + 40  # 40 blocks before the margin
    rates = [rate_at(tip, expiry, 1) for tip in range(100, 141)]
    assert rates == sorted(rates)
    assert rates[0] == market(40) == 2_000
    assert rates[30] == market(10) == 2_000 and rates[35] == market(5) == 4_000
    assert rates[38] == market(2) == 10_000  # one block of slack left: the market rate for two blocks
    assert rates[39] == rates[40] == POLICY.max_rate  # none left: the next block is the last chance


def test_with_slack_a_level_bids_the_estimate_for_its_blocks_and_the_next_block_only_when_urgent() -> None:
    # Blocks with room: the floor gets in at once, whatever the estimate says.
    assert rate_at(100, 200, 1, next_block=100) == 100
    # Full blocks, 3 sat/vB for the next one: with slack to wait for a cheaper block, the estimate for the
    # blocks the level has (2 sat/vB for 97); as the slack is used up the estimate for fewer blocks, which
    # rises, and the next block's rate once URGENT_SLACK blocks are left.
    assert slack(100, 200, 1, 2) == 97
    assert rate_at(100, 200, 1, next_block=3_000) == market(97) == 2_000
    rates = [rate_at(tip, 200, 1, next_block=3_000) for tip in range(100, 198)]
    assert rates == sorted(rates)
    by_slack = {slack(tip, 200, 1, 2): rate for tip, rate in zip(range(100, 198), rates, strict=True)}
    assert by_slack[URGENT_SLACK + 7] == market(URGENT_SLACK + 8) == 2_000
    assert by_slack[URGENT_SLACK + 6] == market(URGENT_SLACK + 7) == 2_222
    assert by_slack[URGENT_SLACK + 1] == 3_000  # the estimate for 4 blocks (5 sat/vB) is more: no more than N
    assert by_slack[URGENT_SLACK] == 3_000 and by_slack[1] == 3_000
    # Never above what the next block takes, however high the estimate.
    assert deadline_rate(LevelMarket(9_000, 3_000), 100, 200, 1, POLICY) == 3_000


def test_a_rising_market_is_paid_at_once() -> None:
    """Waiting in a market that keeps rising only costs more: a level bids the next block's rate."""
    asked = LevelMarket(2_000, 3_000, usual=2_500, rising=True)
    assert deadline_rate(asked, 100, 200, 1, POLICY) == 3_000
    assert is_rising(2_760, 2_500, spike=False) and not is_rising(2_740, 2_500, spike=False)
    assert not is_rising(40_000, 2_500, spike=True)  # a spike is waited out, not chased


def test_a_spike_is_waited_out_only_with_more_slack_than_it_lasts() -> None:
    """A spike (the next block at 40 sat/vB, 4 usually) lasts longer than a few blocks: a level with more
    slack than SPIKE_PATIENCE bids the usual rate and waits for it to pass; one with less pays its ramp now
    rather than its peak later."""
    expiry = 100 + 2 + 1 + SPIKE_PATIENCE + 1  # margin 2, one level
    assert slack(100, expiry, 1, 2) == SPIKE_PATIENCE + 1
    assert rate_at(100, expiry, 1, next_block=40_000, usual=4_000) == 4_000
    assert rate_at(101, expiry, 1, next_block=40_000, usual=4_000) == 40_000
    assert rate_at(100, 106, 1, next_block=40_000, usual=4_000) == 40_000  # 3 blocks of slack


def test_little_slack_bids_for_the_next_block_and_none_bids_higher() -> None:
    # Two blocks of slack: what the next block takes, spike or not.
    assert slack(100, 105, 1, 2) == 2
    assert rate_at(100, 105, 1, next_block=40_000, usual=4_000) == 40_000
    # No slack: half as much again, up to the ceiling.
    assert slack(100, 103, 1, 2) == 0
    assert rate_at(100, 103, 1, next_block=40_000, usual=4_000) == 60_000
    assert rate_at(100, 103, 1, next_block=90_000) == POLICY.max_rate
    # Already late: the same, never less than the estimate.
    assert rate_at(200, 103, 1, next_block=1_000) == market(1)


def test_no_slack_without_a_template_pays_the_ceiling() -> None:
    # 3 levels, 3 blocks before the margin: each must confirm in the next block.
    assert slack(100, 105, 3, 2) == 0
    assert rate_at(100, 105, 3) == 100_000
    # one block of slack: the market rate for the next block, no more
    assert slack(100, 106, 3, 2) == 1 and rate_at(100, 106, 3) == market(1)
    # already late: still the ceiling, never less
    assert rate_at(200, 107, 3) == 100_000
    assert (
        deadline_rate(LevelMarket(300_000), tip=100, expiry_height=103, levels_left=1, policy=POLICY)
        == 300_000
    )


def test_budget() -> None:
    assert fee_budget(10_000, POLICY) == 5000
    # 5000 sat left for 2 levels of 250 vB: 2500 sat each -> 10 sat/vB
    assert budget_capped_rate(50_000, 5000, 2, 250) == 10_000
    assert budget_capped_rate(2_000, 5000, 2, 250) == 2_000


def test_relay_policy_from_the_node() -> None:
    mempool = {
        "minrelaytxfee": Decimal("0.00000100"),
        "incrementalrelayfee": Decimal("0.00000100"),
        "mempoolminfee": Decimal("0.00003000"),
    }
    network = {"relayfee": Decimal("0.00001000"), "incrementalfee": Decimal("0.00001000")}
    relay = relay_policy(mempool, network)
    assert relay == RelayPolicy(min_relay=100, incremental=100, mempool_min=3000)
    assert relay.floor == 3000 and relay.raised(2000) == 3000 and relay.raised(5000) == 5000
    # A node older than Core 24 names the relay and incremental fees in getnetworkinfo only.
    old = relay_policy({"mempoolminfee": Decimal("0.00001000")}, network)
    assert old == RelayPolicy(min_relay=1000, incremental=1000, mempool_min=1000)


def test_a_rate_below_the_floor_is_raised_and_says_so() -> None:
    relay = RelayPolicy(min_relay=100, incremental=100, mempool_min=100)
    assert RaisedRate.of(0, relay) == RaisedRate(requested=0, floor=100)
    assert RaisedRate.of(100, relay) is None and RaisedRate.of(5000, relay) is None


def test_market_rate_by_blocks() -> None:
    m = Market(RelayPolicy(100, 100, 100), {1: 5000, 6: 2000, 1008: 100}, True)
    assert m.rate(1) == 5000 and m.rate(6) == 2000 and m.rate(5000) == 100 and m.rate(0) == 5000


class CountingRpc:
    """bitcoind's answers to a fee estimate: the best block and relay policy, then 1, 3 and 6-block
    estimates."""

    ANSWERS: ClassVar[dict[str, Any]] = {
        "getbestblockhash": "00" * 32,
        "getmempoolinfo": {
            "minrelaytxfee": Decimal("0.00000100"),
            "incrementalrelayfee": Decimal("0.00000100"),
            "mempoolminfee": Decimal("0.00000100"),
        },
        "getnetworkinfo": {"relayfee": Decimal("0.00000100"), "incrementalfee": Decimal("0.00000100")},
    }
    RATES: ClassVar[dict[int, str]] = {1: "0.00005", 3: "0.00003", 6: "0.00001"}

    def __init__(self) -> None:
        self.calls = 0

    async def batch(self, calls: Iterable[tuple[str, list[Any]]]) -> list[Any]:
        self.calls += 1
        return [
            {"feerate": Decimal(self.RATES[params[0]])}
            if method == "estimatesmartfee"
            else self.ANSWERS[method]
            for method, params in calls
        ]


async def test_a_given_rate_wins_and_asks_nothing_else_the_estimate_for_the_speed() -> None:
    rpc = CountingRpc()
    fees = FeeEstimator(rpc, fallback_rate=1000)  # type: ignore[arg-type]
    assert await fees.rate_or_estimate(7_000, Speed.FAST) == 7_000 and rpc.calls == 0
    assert await fees.rate_or_estimate(None, Speed.FAST) == 5_000
    assert await fees.rate_or_estimate(None, Speed.REGULAR) == 3_000
    assert await fees.rate_or_estimate(None, Speed.SLOW) == 1_000


def test_fee_at_rate_rounds_up_so_the_rate_is_met() -> None:
    assert fee_at_rate(1000, 141) == 141
    assert fee_at_rate(1500, 141) == 212  # 211.5
    assert sat_per_vb_ceil(1001) == 2 and sat_per_vb_ceil(1000) == 1


def test_template_cutoff_counts_packages() -> None:
    template = [
        {"fee": 2_000, "weight": 4_000, "depends": []},  # 2 sat/vB, 1,000 vB
        {"fee": 0, "weight": 800, "depends": []},  # a zero-fee exit tx...
        {"fee": 1_400, "weight": 600, "depends": [2]},  # ...and its child: 1,400 sat for 350 vB
        {"fee": 100, "weight": 400, "depends": []},  # a 100 vB filler at 1 sat/vB
    ]
    # A 400 vB package pushes out the filler and the next cheapest: it must beat 2 sat/vB.
    assert template_cutoff(template, room=400) == 2_000
    assert template_cutoff(template, room=100) == 1_000
    template[0]["fee"] = 8_000
    assert template_cutoff(template, room=400) == 4_000
    assert template_cutoff([]) == 0


def test_a_spike_is_told_from_a_rise() -> None:
    spike = NextBlockMemory()
    rates = [4_000] * 12 + [10_000, 22_000, 34_000, 40_000] + [40_000] * 10 + [10_000, 5_000, 4_000]
    seen = [spike.remember(height, rate) for height, rate in enumerate(rates)]
    assert seen[11] == (4_000, False)
    # The jump starts a spike, which lasts while the rate stays above 1.5 times the usual 4 sat/vB,
    # however long it holds (its own median would have caught up after six blocks).
    assert all(s == (4_000, True) for s in seen[12:27]), seen
    assert not seen[27][1]  # back to 5 sat/vB: the spike is over
    assert spike.remember(27, 90_000) == seen[27]  # a second look at a height changes nothing

    busy = NextBlockMemory()  # a quiet market turned busy for good: a spike for SPIKE_BLOCKS, then the market
    seen = [busy.remember(height, rate) for height, rate in enumerate([100] * 12 + [3_500] * 40)]
    assert seen[12] == (100, True) and seen[12 + SPIKE_BLOCKS - 1] == (100, True)
    assert seen[12 + SPIKE_BLOCKS] == (3_500, False) and seen[-1] == (3_500, False)

    rise = NextBlockMemory()
    rates = [4_000 + 250 * k for k in range(150)]  # 0.25 sat/vB more every block, for ever
    assert not any(rise.remember(height, rate)[1] for height, rate in enumerate(rates))


def test_only_fee_refusals_are_repriced() -> None:
    assert refused_for_fee("sendrawtransaction: min relay fee not met, 110 < 141")
    assert refused_for_fee("mempool min fee not met, 141 < 1410")
    assert refused_for_fee("insufficient fee, rejecting replacement")
    assert not refused_for_fee("non-BIP68-final")
    assert not refused_for_fee("bad-txns-inputs-missingorspent")


def test_a_refused_claim_is_repriced_above_its_refused_rate_and_the_floor() -> None:
    relay = RelayPolicy(min_relay=1000, incremental=1000, mempool_min=1000)
    assert repriced_claim_rate(1000, relay, 1000) == 2000  # never the refused tx again
    assert repriced_claim_rate(5000, relay, 1000) == 5000  # the market moved past it
    full = RelayPolicy(min_relay=1000, incremental=1000, mempool_min=7000)
    assert repriced_claim_rate(1000, full, 1000) == 7000  # the mempool floor now
    assert repriced_claim_rate(1000, full, 7000) == 8000


# Claims: priced from a real reading only (fee_policy.claim_rate), HTLC receives along the curve.

RELAY = RelayPolicy(1000, 1000, 1000)
FALLBACK = 20_000  # what a node without estimates answers through the fallback: never a claim's rate


def claim_market(
    estimates: dict[int, int] | None = None,
    next_block: int | None = None,
    room: bool = False,
    targets: Iterable[int] = (CLAIM_TARGET,),
) -> Market:
    """A market read for `targets`: bitcoind's `estimates` where it has one, the fallback elsewhere."""
    known = estimates or {}
    rates = {confirmation_target(t): known.get(t, FALLBACK) for t in targets}
    unestimated = frozenset(confirmation_target(t) for t in targets if t not in known)
    return Market(RELAY, rates, not unestimated, next_block, room=room, unestimated=unestimated)


def test_a_claim_is_priced_from_the_estimate_or_a_next_block_with_room_never_the_fallback() -> None:
    assert claim_rate(claim_market({144: 3000}), CLAIM_TARGET, 50_000) == 3000
    assert claim_rate(claim_market({144: 3000}, next_block=1000, room=True), CLAIM_TARGET, 50_000) == 1000
    assert claim_rate(claim_market({144: 3000}, next_block=9000), CLAIM_TARGET, 50_000) == 3000
    assert claim_rate(claim_market({144: 3000}), CLAIM_TARGET, 2000) == 2000  # the ceiling
    # No estimate: the floor when the next block has room for the whole mempool...
    assert claim_rate(claim_market(next_block=1000, room=True), CLAIM_TARGET, 50_000) == 1000
    # ...and nothing (the claim waits) with a backlog, or no template: never FALLBACK.
    assert claim_rate(claim_market(next_block=9000), CLAIM_TARGET, 50_000) is None
    assert claim_rate(claim_market(), CLAIM_TARGET, 50_000) is None


def test_an_htlc_receive_claim_follows_the_cpfp_curve_towards_its_deadline() -> None:
    deadline = 1000
    targets = [blocks_per_level(t, deadline, 1, POLICY.expiry_margin) for t in range(900, 1000)]
    with_template = claim_market(next_block=2000, targets=targets)
    rates = [htlc_claim_rate(with_template, tip, deadline, POLICY) for tip in range(900, 1000)]
    for tip, rate in zip(range(900, 1000), rates, strict=True):
        # The curve itself, for the one level a claim is (no copy of it).
        assert rate == deadline_rate(LevelMarket(2000, 2000), tip, deadline, 1, POLICY)
    assert rates[0] == 2000 and rates[-1] == 3000 and rates == sorted(rates)  # the next block, then 1.5x
    # Without a template, the estimate for the blocks left, rising as they run out, then the ceiling.
    estimates = {t: market(confirmation_target(t)) for t in targets}
    no_template = claim_market(estimates, targets=targets)
    rates = [htlc_claim_rate(no_template, tip, deadline, POLICY) for tip in range(900, 1000)]
    assert rates == sorted(rates) and rates[0] == 2000 and rates[-1] == POLICY.max_rate
    # Neither a reading nor a template: it waits while there is slack, pays the ceiling when there is none.
    blind = claim_market(targets=targets)
    assert htlc_claim_rate(blind, 900, deadline, POLICY) is None
    assert htlc_claim_rate(blind, 998, deadline, POLICY) == POLICY.max_rate


def test_a_batch_pays_what_its_most_urgent_claim_needs() -> None:
    tip, deadline = 990, 1000
    targets = claim_targets(CLAIM_TARGET, tip, [deadline], POLICY)
    backlog = claim_market(next_block=9000, targets=targets)  # no estimate, a backlog
    assert batch_claim_rate(backlog, CLAIM_TARGET, 50_000, tip, [], POLICY) is None
    # The HTLC's deadline prices the batch from the next block's reading.
    assert batch_claim_rate(backlog, CLAIM_TARGET, 50_000, tip, [deadline], POLICY) == 9000
    calm = claim_market({144: 1500}, next_block=1000, room=True, targets=targets)
    assert batch_claim_rate(calm, CLAIM_TARGET, 50_000, tip, [], POLICY) == 1000
    targets = claim_targets(CLAIM_TARGET, 997, [deadline], POLICY)
    late = claim_market({144: 1500}, next_block=1000, room=True, targets=targets)
    assert batch_claim_rate(late, CLAIM_TARGET, 50_000, 997, [deadline], POLICY) == 1500  # 1.5x next


class NoEstimateRpc(CountingRpc):
    """A node with no estimate, and a template of `template_vsize` vB beside a mempool of `mempool` vB."""

    def __init__(self, mempool: int, template_vsize: int) -> None:
        super().__init__()
        self.mempool, self.template_vsize = mempool, template_vsize

    async def batch(self, calls: Iterable[tuple[str, list[Any]]]) -> list[Any]:
        answers: list[Any] = []
        for method, _ in calls:
            if method == "estimatesmartfee":
                answers.append({"errors": ["Insufficient data or no feerate found"], "blocks": 0})
            elif method == "getblocktemplate":
                tx = {"fee": 5000, "weight": self.template_vsize * 4, "depends": []}
                answers.append({"height": 101, "transactions": [tx]})
            elif method == "getmempoolinfo":
                answers.append({**self.ANSWERS[method], "bytes": self.mempool})
            else:
                answers.append(self.ANSWERS[method])
        return answers


async def test_the_market_names_what_bitcoind_did_not_estimate_and_whether_the_next_block_has_room() -> None:
    roomy = FeeEstimator(NoEstimateRpc(1000, 1000), fallback_rate=FALLBACK)  # type: ignore[arg-type]
    market = await roomy.market([CLAIM_TARGET], next_block=400)
    assert market.room and market.next_block == 100 and market.estimate(CLAIM_TARGET) is None
    assert market.rate(CLAIM_TARGET) == FALLBACK  # still there for those who may guess
    assert claim_rate(market, CLAIM_TARGET, 50_000) == 100
    full = FeeEstimator(NoEstimateRpc(20_000, 1000), fallback_rate=FALLBACK)  # type: ignore[arg-type]
    market = await full.market([CLAIM_TARGET], next_block=400)
    assert not market.room and claim_rate(market, CLAIM_TARGET, 50_000) is None


def test_a_template_older_than_a_few_new_transactions_is_no_backlog() -> None:
    assert not has_backlog(300, 0)  # a claim just broadcast beside the template made before it
    assert not has_backlog(2_000, 1000) and has_backlog(2_001, 1000)
    assert not has_backlog(1_500_000, 1_000_000) and has_backlog(1_500_001, 1_000_000)
