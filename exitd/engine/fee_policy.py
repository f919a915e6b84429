"""Which package fee rate to aim for: what gets a level in before the deadline, within a budget.

Every exit tx must confirm before `expiry_height` (after it the server may sweep the tree), and TRUC
allows one unconfirmed level per chain, so `r` levels left need at least `r` blocks. With `B` blocks left
before the deadline (expiry minus a safety margin), the level in flight may take `W = B // r` blocks, and
the exit as a whole may let `S = B - r` blocks pass without a confirmation (its slack).

The curve (stateless, re-evaluated every block, so RBF follows it) reads the market from the node
(exitd/chain/fees.py): `N`, the rate that enters the next block now (its block template: the floor while
blocks have room), whether the market is in a spike or rising, and `U`, its usual rate (before the spike):
- with slack (`S > URGENT_SLACK`): bitcoind's estimate for the `W` blocks the level has, never above `N`.
  In a steady market it sits below `N` (the next block's cutoff, plus a margin for what arrives before the
  block): the package enters the first block cheaper than most, where an oracle that knew every block
  would put it. As slack is used up `W` shrinks, and the estimate for it rises towards the next block's;
- in a rising market (`N` clearly above its recent median), `N` at once: waiting only costs more;
- during a spike, with more slack than a spike lasts (`S > SPIKE_PATIENCE`), no more than `U`: the
  package waits the spike out; with less, `N`: its ramp now costs less than its peak later;
- with little slack (`0 < S <= URGENT_SLACK`): `N`;
- with none (`S <= 0`): every level must now confirm in the next block: half as much again as `N`, up to
  the ceiling (`max_rate`).
Without a template (an old or peerless node), bitcoind's estimate for confirming within `W` blocks stands in
for `N`, and the ceiling is paid with no slack left: LND's sweeper with the deadline rolled per level
(fee-bumping-anchors.md section 4), slack a fast level leaves passing to the next ones.

The budget caps what one exit may spend in fees (a share of its amount); a rate given explicitly in a
request stands in for the market (as the estimate, with no template) and is not capped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exitd.chain.fees import Market, RelayPolicy, confirmation_target, fee_at_rate

# What a CPFP child adds to a package before it is built: the P2A input, one P2TR key-path input, one
# P2TR output and the tx overhead. For budgets and estimates; the real child is measured when built.
CHILD_VSIZE_ESTIMATE = 41 + 58 + 43 + 11
# Blocks of slack at or below which a level bids for the next block.
URGENT_SLACK = 2
# Blocks of slack above which a level waits a spike out: a spike lasts longer than a few blocks, so an
# exit with less slack than this only pays the spike's peak later instead of its ramp now.
SPIKE_PATIENCE = 12
# A claim of an exit nobody else can spend has no deadline: it is priced for a day. An HTLC receive's has
# one (its rival leaf): it follows the curve above (htlc_claim_rate).
CLAIM_TARGET = 144
# A claim a request makes without a fee_rate (and admission's estimate of it): priced for about three blocks.
REQUEST_CLAIM_TARGET = 3


@dataclass(frozen=True)
class FeePolicy:
    max_rate: int = 500_000  # sat/kvB (500 sat/vB)
    expiry_margin: int = 6  # blocks before expiry_height by which the last level should be confirmed
    budget_ratio: float = 0.5  # share of the VTXO amount an exit may spend on CPFP fees
    min_net_recovered: int = 0  # sat an exit must recover after its fees to start unforced (admission)


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


@dataclass(frozen=True)
class LevelMarket:
    """What the market asks of a level, in sat/kvB: `estimate` for its confirmation target (or the
    request's rate), `next_block` to enter the next block now (None: unknown), and during a `spike` the
    `usual` rate."""

    estimate: int
    next_block: int | None = None
    usual: int | None = None
    spike: bool = False
    rising: bool = False


def level_market(market: Market, estimate: int) -> LevelMarket:
    """What a level's rate is decided from: `estimate` for its target, and the market's reading of the next
    block (its rate, and whether that is a spike or a rise)."""
    return LevelMarket(estimate, market.next_block, market.usual, market.spike, market.rising)


def deadline_rate(
    market: LevelMarket, tip: int, expiry_height: int, levels_left: int, policy: FeePolicy
) -> int:
    """The target package rate in sat/kvB for an exit with `levels_left` unconfirmed txs."""
    left = slack(tip, expiry_height, levels_left, policy.expiry_margin)
    estimate, next_block = market.estimate, market.next_block
    if next_block is None:
        return max(estimate, policy.max_rate) if left <= 0 else estimate
    if left <= 0:
        return max(estimate, min(next_block * 3 // 2, policy.max_rate))
    if market.spike and market.usual is not None:
        return min(next_block, market.usual) if left > SPIKE_PATIENCE else next_block
    if left <= URGENT_SLACK or market.rising:
        return next_block
    return min(estimate, next_block)


def claim_rate(market: Market, target: int, max_rate: int) -> int | None:
    """A claim's rate, from a real reading of the market only (a claim can wait, so it never pays a guess
    such as bitcoind's fallback): the node's estimate for `target` blocks, or less when the next block
    takes less (the floor while blocks have room); with no estimate, the floor when the next block has room
    for the whole mempool (nothing is waiting, so the floor is what the market asks); never above
    `max_rate`, and never a spike's (an estimate lags one). None: no estimate and a backlog (or no
    template): nobody can price the claim, it waits."""
    estimate = market.estimate(target)
    if estimate is not None:
        rate = estimate if market.next_block is None else min(estimate, market.next_block)
    elif market.room and market.next_block is not None:
        rate = market.next_block
    else:
        return None
    return min(rate, max_rate)


def htlc_claim_rate(market: Market, tip: int, deadline: int, policy: FeePolicy) -> int | None:
    """The rate of a claim that must confirm before `deadline` (the height its rival leaf opens at: an
    HTLC receive's refund to the server): the CPFP curve's for the one level it is (deadline_rate), which
    escalates as the slack runs out, up to the policy's ceiling. With no estimate the next block's rate
    stands in for it (a real reading; never the fallback). None: neither an estimate nor a template while
    there is slack (it waits, as any claim); with none left the ceiling is paid without a reading, as the
    curve does."""
    estimate = market.estimate(blocks_per_level(tip, deadline, 1, policy.expiry_margin))
    late = slack(tip, deadline, 1, policy.expiry_margin) <= 0
    if estimate is None and market.next_block is None and not late:
        return None
    if estimate is None:
        estimate = market.relay.floor if market.next_block is None else market.next_block
    return deadline_rate(level_market(market, estimate), tip, deadline, 1, policy)


def claim_targets(target: int, tip: int, deadlines: Iterable[int], policy: FeePolicy) -> list[int]:
    """The confirmation targets a claim reads the market for: its own, and each deadline's."""
    return [target, *(blocks_per_level(tip, d, 1, policy.expiry_margin) for d in deadlines)]


def batch_claim_rate(
    market: Market, target: int, max_rate: int, tip: int, deadlines: Iterable[int], policy: FeePolicy
) -> int | None:
    """The rate of one claim tx spending exits with these `deadlines` (and others without): the highest
    any of them needs, since they confirm together. None: none of them can be priced."""
    rates = [
        claim_rate(market, target, max_rate),
        *(htlc_claim_rate(market, tip, d, policy) for d in deadlines),
    ]
    priced = [rate for rate in rates if rate is not None]
    return max(priced) if priced else None


# What bitcoind answers when it refuses a tx for its fee (validation.cpp, policy/rbf.cpp).
FEE_REFUSALS = ("min relay fee not met", "mempool min fee not met", "insufficient fee")


def refused_for_fee(message: str) -> bool:
    """Whether a refused broadcast would be accepted at a higher fee (and only then)."""
    return any(reason in message for reason in FEE_REFUSALS)


def repriced_claim_rate(rate: int, relay: RelayPolicy, refused_rate: int) -> int:
    """The rate of a claim whose last broadcast at `refused_rate` was refused for its fee: the market's
    `rate`, raised to the node's floor now, and at least the incremental relay fee above the refused rate,
    so a retry is never the refused tx again byte for byte."""
    return max(relay.raised(rate), refused_rate + relay.incremental)


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
