"""Which package fee rate to aim for: the market rate, raised as a VTXO's expiry nears, within a budget.

Every exit tx must confirm before `expiry_height` (after it the server may sweep the tree), and TRUC
allows one unconfirmed level per chain, so `r` levels left need at least `r` blocks. With `B` blocks left
before the deadline (expiry minus a safety margin), each level has a window of `W = B // r` blocks.

The curve (stateless, re-evaluated every block, so RBF follows it):
- `W >= escalation_window`: the base rate (the request's `fee_rate`, else bitcoind's 1-block estimate);
- `W <= 1`: the ceiling (`max_rate`), since the next block is the last chance for this level;
- in between, linear from base to ceiling as `W` shrinks: rate = base + (ceiling - base) * (E - W) / (E - 1).

This is LND's deadline-aware linear fee function with the deadline rolled per level (fee-bumping-anchors.md
section 4): slack left by a fast level passes to the next ones. The budget caps what one exit may spend in
fees (a share of its amount); a rate given explicitly in a request is the user's override and is not capped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exitd.chain.fees import fee_at_rate

# The relay floor: below this bitcoind refuses the package whatever the budget says.
MIN_RELAY_RATE = 1000  # sat/kvB
# What a CPFP child adds to a package before it is built: the P2A input, one P2TR key-path input, one
# P2TR output and the tx overhead. For budgets and estimates; the real child is measured when built.
CHILD_VSIZE_ESTIMATE = 41 + 58 + 43 + 11


@dataclass(frozen=True)
class FeePolicy:
    max_rate: int = 500_000  # sat/kvB (500 sat/vB)
    escalation_window: int = 144  # blocks per level below which escalation begins
    expiry_margin: int = 6  # blocks before expiry_height by which the last level should be confirmed
    budget_ratio: float = 0.5  # share of the VTXO amount an exit may spend on CPFP fees


def blocks_per_level(tip: int, expiry_height: int, levels_left: int, margin: int) -> int:
    """W: the blocks each remaining level may take to keep the deadline (0 or less: already late)."""
    if levels_left <= 0:
        return 1 << 30
    return (expiry_height - margin - tip) // levels_left


def deadline_rate(base: int, tip: int, expiry_height: int, levels_left: int, policy: FeePolicy) -> int:
    """The target package rate in sat/kvB for an exit with `levels_left` unconfirmed txs."""
    ceiling = max(base, policy.max_rate)
    window = blocks_per_level(tip, expiry_height, levels_left, policy.expiry_margin)
    span = policy.escalation_window
    if window >= span:
        return base
    if window <= 1 or span <= 1:
        return ceiling
    return base + -(-(ceiling - base) * (span - window) // (span - 1))


def exit_fee_estimate(rate: int, vsizes: Iterable[int]) -> int:
    """The CPFP fees of broadcasting exit txs of these vsizes at `rate` sat/kvB, one package each."""
    return sum(fee_at_rate(rate, vsize + CHILD_VSIZE_ESTIMATE) for vsize in vsizes)


def fee_budget(amount: int, policy: FeePolicy) -> int:
    return int(amount * policy.budget_ratio)


def budget_capped_rate(target: int, budget_left: int, levels_left: int, package_vsize: int) -> int:
    """The highest rate at which this level's package still leaves an even share of the budget for the
    levels after it."""
    if levels_left <= 0 or package_vsize <= 0:
        return target
    share = budget_left // levels_left
    return min(target, share * 1000 // package_vsize)
