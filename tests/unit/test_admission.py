"""Admission of an exit: worth it (net recovered after CPFP and claim fees) and in time."""

from __future__ import annotations

from exitd.chain.fees import Market, RelayPolicy, confirmation_target, fee_at_rate
from exitd.chain.view import BlockRef, ChainSnapshot
from exitd.engine.admission import (
    Candidate,
    Refusal,
    admission_targets,
    admissions,
    exit_cost,
    refusal,
    refusal_reason,
)
from exitd.engine.fee_policy import CHILD_VSIZE_ESTIMATE, FeePolicy

VTXO = "aa" * 32 + ":0"


def cost(amount: int, vsizes: tuple[int, ...] = (150, 150), blocks_left: int = 100, delta: int = 12):
    return exit_cost(VTXO, amount, vsizes, len(vsizes), delta, blocks_left, 2000, 1000, 150)


def test_the_net_is_the_amount_less_every_package_and_the_claim() -> None:
    c = cost(50_000)
    packages = 2 * fee_at_rate(2000, 150 + CHILD_VSIZE_ESTIMATE)
    assert (c.cpfp_fee, c.claim_fee) == (packages, 150)
    assert c.net == 50_000 - packages - 150
    assert refusal(c, min_net=0) is None


def test_a_net_below_dust_or_the_floor_is_not_worth_it() -> None:
    fees = cost(0).cpfp_fee + cost(0).claim_fee
    assert refusal(cost(fees + 329), min_net=0) is Refusal.NOT_WORTH_IT
    assert refusal(cost(fees + 330), min_net=0) is None
    assert refusal(cost(fees + 330), min_net=1000) is Refusal.NOT_WORTH_IT
    message = refusal_reason(cost(fees + 329), Refusal.NOT_WORTH_IT, 0)
    assert "leaves 329 sat, below the floor of 330 sat" in message and str(cost(0).cpfp_fee) in message


def test_levels_already_broadcast_cost_nothing_more() -> None:
    assert cost(1000, vsizes=()).cpfp_fee == 0


def test_fewer_blocks_than_levels_plus_delta_is_too_late() -> None:
    assert refusal(cost(50_000, blocks_left=14, delta=12), min_net=0) is None
    late = cost(50_000, blocks_left=13, delta=12)
    assert refusal(late, min_net=0) is Refusal.TOO_LATE
    assert "13 blocks are left" in refusal_reason(late, Refusal.TOO_LATE, 0) and "need 14" in refusal_reason(
        late, Refusal.TOO_LATE, 0
    )


def test_a_quiet_node_without_estimates_is_priced_as_a_cycle_pays_it_not_at_the_fallback() -> None:
    """A fresh node has no estimate (the fallback stands in), but its next block has room: a cycle pays the
    floor there, so admission weighs the floor too, and the claim at it, not the fallback's 20 sat/vB."""
    policy = FeePolicy()
    tip = ChainSnapshot(BlockRef(500, "11" * 32))
    c = Candidate(
        VTXO, 20_000, 500 + 12 + 144 + 3, 12, (("aa" * 32, 150), ("bb" * 32, 150), ("cc" * 32, 150)), 111
    )
    targets = {confirmation_target(t) for t in admission_targets(tip, [c], policy)}
    relay = RelayPolicy(100, 100, 100)
    quiet = Market(
        relay,
        dict.fromkeys(targets, 20_000),
        False,
        next_block=100,
        room=True,
        unestimated=frozenset(targets),
    )
    (cost,) = admissions(tip, quiet, [c], policy).costs
    assert cost.cpfp_fee == 3 * fee_at_rate(100, 150 + CHILD_VSIZE_ESTIMATE)
    assert cost.claim_fee == fee_at_rate(100, 111)
    assert refusal(cost, min_net=0) is None
    busy = Market(
        relay, dict.fromkeys(targets, 20_000), False, next_block=30_000, unestimated=frozenset(targets)
    )
    (dear,) = admissions(tip, busy, [c], policy).costs  # a backlog and no estimate: the fallback is the guess
    assert dear.cpfp_fee == 3 * fee_at_rate(20_000, 150 + CHILD_VSIZE_ESTIMATE)
