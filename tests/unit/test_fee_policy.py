from exitd.engine.fee_policy import (
    FeePolicy,
    blocks_per_level,
    budget_capped_rate,
    deadline_rate,
    fee_budget,
)

POLICY = FeePolicy(max_rate=100_000, escalation_window=11, expiry_margin=2, budget_ratio=0.5)


def test_plenty_of_time_pays_the_base_rate() -> None:
    assert deadline_rate(2000, tip=100, expiry_height=1000, levels_left=3, policy=POLICY) == 2000


def test_last_chance_pays_the_ceiling() -> None:
    # 3 levels, 5 blocks left before the margin: 1 block per level.
    assert blocks_per_level(100, 107, 3, 2) == 1
    assert deadline_rate(2000, tip=100, expiry_height=107, levels_left=3, policy=POLICY) == 100_000
    # already late: still the ceiling, never less
    assert deadline_rate(2000, tip=200, expiry_height=107, levels_left=3, policy=POLICY) == 100_000


def test_linear_in_between_and_monotonic() -> None:
    # window 6 of 11: halfway -> base + (ceiling - base) * 5/10
    assert deadline_rate(2000, tip=100, expiry_height=100 + 2 + 6, levels_left=1, policy=POLICY) == 51_000
    rates = [deadline_rate(2000, tip, 130, 2, POLICY) for tip in range(90, 131)]
    assert rates == sorted(rates) and rates[0] == 2000 and rates[-1] == 100_000


def test_ceiling_never_below_an_explicit_base() -> None:
    assert deadline_rate(300_000, tip=100, expiry_height=103, levels_left=1, policy=POLICY) == 300_000


def test_budget() -> None:
    assert fee_budget(10_000, POLICY) == 5000
    # 5000 sat left for 2 levels of 250 vB: 2500 sat each -> 10 sat/vB
    assert budget_capped_rate(50_000, 5000, 2, 250) == 10_000
    assert budget_capped_rate(2_000, 5000, 2, 250) == 2_000
