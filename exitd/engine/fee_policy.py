"""Which package fee rate to aim for: the market rate for the blocks an exit really has, within a budget.

Every exit tx must confirm before `expiry_height` (after it the server may sweep the tree), and TRUC
allows one unconfirmed level per chain, so `r` levels left need at least `r` blocks. With `B` blocks left
before the deadline (expiry minus a safety margin), the level in flight may take `W = B // r` blocks, and
the exit as a whole may miss `S = B - r` blocks (its slack) and still finish in time.

The curve (stateless, re-evaluated every block, so RBF follows it):
- while there is slack (`S > 0`), the market rate for confirming within `W` blocks (bitcoind's estimate for
  that target, or the request's `fee_rate`): a comfortable deadline pays what the market asks for it;
- every block the level waits uses up slack: `W` shrinks, and with it the target, so the rate rises with
  what the market asks for the shorter wait, and only by that;
- with no slack left (`S <= 0`), the ceiling (`max_rate`): every level must now confirm in the next block.

This is LND's sweeper (start from the estimate for the blocks available, spend the budget when the deadline
is next) with the deadline rolled per level (fee-bumping-anchors.md section 4): slack left by a fast level
passes to the next ones. The budget caps what one exit may spend in fees (a share of its amount); a rate
given explicitly in a request is the user's override and is not capped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exitd.chain.fees import RelayPolicy, confirmation_target, fee_at_rate

# What a CPFP child adds to a package before it is built: the P2A input, one P2TR key-path input, one
# P2TR output and the tx overhead. For budgets and estimates; the real child is measured when built.
CHILD_VSIZE_ESTIMATE = 41 + 58 + 43 + 11


@dataclass(frozen=True)
class FeePolicy:
    max_rate: int = 500_000  # sat/kvB (500 sat/vB)
    expiry_margin: int = 6  # blocks before expiry_height by which the last level should be confirmed
    budget_ratio: float = 0.5  # share of the VTXO amount an exit may spend on CPFP fees


@dataclass(frozen=True)
class RaisedRate:
    """A request's fee_rate below what the node accepts, and the floor paid instead (sat/kvB): barkd's
    contract allows any rate, the node does not relay below its floor."""

    requested: int
    floor: int

    @staticmethod
    def of(requested: int, relay: RelayPolicy) -> RaisedRate | None:
        return RaisedRate(requested, relay.floor) if requested < relay.floor else None


def blocks_per_level(tip: int, expiry_height: int, levels_left: int, margin: int) -> int:
    """W: the blocks each remaining level may take to keep the deadline (0 or less: already late)."""
    if levels_left <= 0:
        return 1 << 30
    return (expiry_height - margin - tip) // levels_left


def slack(tip: int, expiry_height: int, levels_left: int, margin: int) -> int:
    """S: the blocks the exit may still let pass without its level confirming (0 or less: none)."""
    return expiry_height - margin - tip - max(0, levels_left)


def level_target(tip: int, expiry_height: int, levels_left: int, policy: FeePolicy) -> int:
    """The confirmation target (in blocks, as estimatesmartfee takes it) of the level in flight."""
    return confirmation_target(blocks_per_level(tip, expiry_height, levels_left, policy.expiry_margin))


def deadline_rate(market_rate: int, tip: int, expiry_height: int, levels_left: int, policy: FeePolicy) -> int:
    """The target package rate in sat/kvB for an exit with `levels_left` unconfirmed txs; `market_rate` is
    what confirms within `level_target` blocks (bitcoind's estimate, or the request's fee_rate)."""
    if slack(tip, expiry_height, levels_left, policy.expiry_margin) <= 0:
        return max(market_rate, policy.max_rate)
    return market_rate


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
