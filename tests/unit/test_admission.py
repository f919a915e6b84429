"""Admission of an exit: worth it (net recovered after CPFP and claim fees) and in time."""

from __future__ import annotations

from exitd.chain.fees import fee_at_rate
from exitd.engine.admission import Refusal, exit_cost, refusal, refusal_reason
from exitd.engine.fee_policy import CHILD_VSIZE_ESTIMATE

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
