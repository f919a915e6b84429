from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar

from exitd.chain.fees import (
    FeeEstimator,
    Market,
    RelayPolicy,
    Speed,
    confirmation_target,
    fee_at_rate,
    relay_policy,
    sat_per_vb_ceil,
)
from exitd.engine.fee_policy import (
    FeePolicy,
    RaisedRate,
    blocks_per_level,
    budget_capped_rate,
    deadline_rate,
    fee_budget,
    level_target,
    slack,
)

POLICY = FeePolicy(max_rate=100_000, expiry_margin=2, budget_ratio=0.5)
GUARD_SLACK = 144  # guard.slack_blocks' default
EXIT_DELTA = 12


def market(blocks: int) -> int:
    """A market where waiting is cheaper: 20 sat/vB for the next block, falling to 2 sat/vB."""
    return max(2_000, 20_000 // blocks)


def rate_at(tip: int, expiry: int, levels: int, policy: FeePolicy = POLICY) -> int:
    return deadline_rate(market(level_target(tip, expiry, levels, policy)), tip, expiry, levels, policy)


def test_an_exit_started_by_the_guard_pays_the_market_on_every_level() -> None:
    """The guard starts an exit depth + exit_delta + slack blocks before expiry. Every level then has tens
    of blocks, and the market's rate for that many blocks is all it pays, level after level (the curve
    that escalated below a fixed 144-block window paid 165 times the market here)."""
    policy = FeePolicy()  # the defaults
    for depth in (1, 3, 5):
        start = 1000
        expiry = start + depth + EXIT_DELTA + GUARD_SLACK
        tip = start
        for levels in range(depth, 0, -1):  # each level confirms in the next block
            target = level_target(tip, expiry, levels, policy)
            assert target >= (EXIT_DELTA + GUARD_SLACK - policy.expiry_margin) // depth
            assert deadline_rate(2_000, tip, expiry, levels, policy) == 2_000
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
    """One level waiting block after block: its target shrinks with the blocks left, so the rate follows
    what the market asks for the shorter wait, and nothing more, until there is no slack at all."""
    expiry = 100 + 2 + 40  # 40 blocks before the margin
    rates = [rate_at(tip, expiry, 1) for tip in range(100, 141)]
    assert rates == sorted(rates)
    assert rates[0] == market(40) == 2_000
    assert rates[30] == market(10) == 2_000 and rates[35] == market(5) == 4_000
    assert rates[38] == market(2) == 10_000  # one block of slack left: the market rate for two blocks
    assert rates[39] == rates[40] == POLICY.max_rate  # none left: the next block is the last chance


def test_no_slack_pays_the_ceiling() -> None:
    # 3 levels, 3 blocks before the margin: each must confirm in the next block.
    assert slack(100, 105, 3, 2) == 0
    assert rate_at(100, 105, 3) == 100_000
    # one block of slack: the market rate for the next block, no more
    assert slack(100, 106, 3, 2) == 1 and rate_at(100, 106, 3) == market(1)
    # already late: still the ceiling, never less
    assert rate_at(200, 107, 3) == 100_000


def test_ceiling_never_below_the_market() -> None:
    assert deadline_rate(300_000, tip=100, expiry_height=103, levels_left=1, policy=POLICY) == 300_000


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
