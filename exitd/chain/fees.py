"""What the market and the node ask in fees, in sat/kvB: estimates and the node's relay policy.

Estimates only change when a block arrives, and a cycle over many exits asks many times, so each
`estimatesmartfee` target is asked once per best block. A node without an estimate (regtest, a fresh node)
yields the configured fallback, never zero; a Market names the targets the fallback stood in for, so that a
caller that must not pay a guess (a claim, exitd/engine/fee_policy.py) can tell.

The relay policy is read from the node, never assumed: Bitcoin Core 29.1 and later relay from 0.1 sat/vB by
default, a node may be started with other `-minrelaytxfee` / `-incrementalrelayfee`, and `mempoolminfee`
rises above the relay floor whenever the mempool overflows `-maxmempool` (and falls back as it drains).
Every estimate is raised to the floor of the moment, since below it the node refuses the package.

What gets into the next block now is read from the node's block template: when the mempool holds much more
than the template (FULL_MEMPOOL times, and TEMPLATE_LAG vbytes more: the node keeps a template for seconds
while transactions arrive, so a few left out, or the one just broadcast, say nothing), the rate of the
cheapest packages the caller's would push out, with a margin for what arrives before the block
(NEXT_BLOCK_MARGIN) and the increment, else the floor. The estimator lags a market that moves; the template
does not. A short memory of it tells a spike from a market that rises: a spike begins when the next-block rate
jumps above SPIKE times its median over the last blocks, and lasts until it is back within SPIKE times that
median as it stood when the spike began (a slow rise never jumps so far above its own recent median), or for
SPIKE_BLOCKS at most: a market that stays high (a quiet one turned busy) is the market. A next-block rate
RISING percent of its median, short of a spike, is a market on the rise. The memory keeps the rate of one
package (PACKAGE_ROOM) whatever room a caller asks about, so that its heights compare.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from exitd.chain.rpc import BitcoinRpc, RpcError

SATS_PER_BTC = 100_000_000
CONFIRMATION_TARGETS = (1, 3, 6)
# estimatesmartfee's longest horizon (Core's fee estimator tracks no further).
MAX_CONFIRMATION_TARGET = 1008
# Blocks over which the next-block rate's median is kept.
NEXT_BLOCK_MEMORY = 12
# A next-block rate this many times its recent median is a spike; one that lasts this many blocks is the
# market as it now is.
SPIKE = 1.5
SPIKE_BLOCKS = 36
# A next-block rate this many percent of its recent median, short of a spike, is a rising market.
RISING = 110
# A mempool this many times the size of the next block's template, and TEMPLATE_LAG vbytes more, has a
# backlog: blocks are full. bitcoind makes a new template at most every 5 s while transactions arrive, so a
# read right after a broadcast misses it: an empty template beside a claim just sent is no backlog.
FULL_MEMPOOL = 1.5
TEMPLATE_LAG = 1_000
# vbytes an exit package (a parent and its CPFP child) takes in a block, about.
PACKAGE_ROOM = 400
# Percent of the template's rate bid for the next block: what others send between the template and the
# block pushes the cutoff up (in bench/fee_market.py's full markets, bids at the template's very rate
# missed the next block again and again).
NEXT_BLOCK_MARGIN = 105


class Speed(Enum):
    """How soon a tx should confirm: ~1 block (exit packages), ~3 (claims, sends) or ~6."""

    FAST = "fast"
    REGULAR = "regular"
    SLOW = "slow"


@dataclass(frozen=True)
class FeeRates:
    """sat/kvB for ~1, ~3 and ~6 blocks; `estimated` is False when a fallback stood in."""

    fast: int
    regular: int
    slow: int
    estimated: bool

    def at(self, speed: Speed) -> int:
        if speed is Speed.FAST:
            return self.fast
        if speed is Speed.REGULAR:
            return self.regular
        return self.slow


@dataclass(frozen=True)
class RelayPolicy:
    """The node's relay policy now, in sat/kvB (getmempoolinfo, getnetworkinfo)."""

    min_relay: int  # -minrelaytxfee: below it nothing is relayed or mined
    incremental: int  # -incrementalrelayfee: what a replacement adds per vbyte of its own (BIP125 rule 4)
    mempool_min: int  # mempoolminfee: the relay floor, or more while the mempool is full

    @property
    def floor(self) -> int:
        """The lowest package rate the node accepts at this moment."""
        return max(self.min_relay, self.mempool_min)

    def raised(self, rate: int) -> int:
        return max(rate, self.floor)


def sat_per_vb_ceil(sat_per_kvb: int) -> int:
    return -(-sat_per_kvb // 1000)


def fee_at_rate(sat_per_kvb: int, vsize: int) -> int:
    """CFeeRate::GetFee: the fee of `vsize` vbytes at a rate in sat/kvB, rounded up so the rate is met."""
    return -(-sat_per_kvb * vsize // 1000)


def btc_to_sat(btc: Decimal | int | str) -> int:
    """Exact conversion of a bitcoind amount (the RPC client parses JSON numbers as Decimal)."""
    sats = Decimal(btc) * SATS_PER_BTC
    if sats != sats.to_integral_value():
        raise ValueError(f"amount {btc} has more than 8 decimals")
    return int(sats)


def relay_policy(mempool_info: dict[str, Any], network_info: dict[str, Any]) -> RelayPolicy:
    """The policy from getmempoolinfo and getnetworkinfo (BTC/kvB). getmempoolinfo names the relay and
    incremental fees too since Core 24; getnetworkinfo's `relayfee` and `incrementalfee` stand in before."""
    min_relay = mempool_info.get("minrelaytxfee", network_info["relayfee"])
    incremental = mempool_info.get("incrementalrelayfee", network_info["incrementalfee"])
    return RelayPolicy(
        min_relay=btc_to_sat(min_relay),
        incremental=btc_to_sat(incremental),
        mempool_min=btc_to_sat(mempool_info["mempoolminfee"]),
    )


def template_cutoff(transactions: Sequence[dict[str, Any]], room: int = PACKAGE_ROOM) -> int:
    """The package rate (sat/kvB) a package of `room` vbytes must beat to take a full template's place: the
    rate of the cheapest packages it would push out (each tx with the in-template ancestors it depends on,
    as the miner takes them; a zero-fee tx alone rides on its child). Not the very lowest: a small tx at
    the end of a block fills a gap a larger package would not fit in."""
    packages: list[tuple[int, int]] = []
    for tx in transactions:
        parents = [transactions[i - 1] for i in tx.get("depends", ())]
        fee = int(tx["fee"]) + sum(int(p["fee"]) for p in parents)
        weight = int(tx["weight"]) + sum(int(p["weight"]) for p in parents)
        if fee == 0 and not parents:
            continue
        packages.append((fee * 4000 // weight, -(-weight // 4)))
    pushed = 0
    for rate, vsize in sorted(packages):
        pushed += vsize
        if pushed >= room:
            return rate
    return max(packages)[0] if packages else 0


def next_block_rate(transactions: Sequence[dict[str, Any]], room: int, relay: RelayPolicy) -> int:
    """What `room` vbytes of packages bid to enter a full template's block (module doc)."""
    cutoff = template_cutoff(transactions, room)
    return relay.raised(cutoff * NEXT_BLOCK_MARGIN // 100 + relay.incremental)


def template_vsize(transactions: Sequence[dict[str, Any]]) -> int:
    return sum(-(-int(tx["weight"]) // 4) for tx in transactions)


def has_backlog(mempool_vsize: int, template: int) -> bool:
    """Whether a mempool of `mempool_vsize` holds more than the next block (a template of `template` vB)
    takes: blocks are full and transactions wait."""
    return mempool_vsize > max(template * FULL_MEMPOOL, template + TEMPLATE_LAG)


def confirmation_target(blocks: int) -> int:
    """A number of blocks as estimatesmartfee takes it (1 to 1008)."""
    return min(MAX_CONFIRMATION_TARGET, max(1, blocks))


@dataclass(frozen=True)
class Market:
    """The node's relay policy and its estimates for some confirmation targets, read at one moment."""

    relay: RelayPolicy
    estimates: dict[int, int]  # confirmation target -> sat/kvB, at least relay.floor
    estimated: bool  # False when the fallback stood in for at least one target
    next_block: int | None = None  # sat/kvB that enters the next block now (None: not asked, or no template)
    usual: int | None = None  # the next-block rate as it usually is: before the spike, during one
    spike: bool = False
    rising: bool = False  # the next-block rate clearly above its recent median, no spike
    # The template showed the next block with room for the whole mempool (no backlog): `next_block` is then
    # the relay floor, and the floor is what the market asks.
    room: bool = False
    # The targets bitcoind had no estimate for (the fallback stands in for them in `estimates`).
    unestimated: frozenset[int] = frozenset()

    def rate(self, blocks: int) -> int:
        """The rate that confirms within `blocks` (asked for when the market was read)."""
        return self.estimates[confirmation_target(blocks)]

    def estimate(self, blocks: int) -> int | None:
        """bitcoind's own estimate for `blocks` (raised to the floor), or None where the fallback stood in."""
        target = confirmation_target(blocks)
        return None if target in self.unestimated else self.estimates[target]


def is_rising(rate: int, usual: int, spike: bool) -> bool:
    """Whether a next-block rate is clearly above its recent median (`usual`) without being a spike."""
    return not spike and rate * 100 > usual * RISING


class NextBlockMemory:
    """The next-block rate over the last blocks, to tell a spike from the usual market (module doc)."""

    def __init__(self) -> None:
        self.rates: dict[int, int] = {}  # the first next-block rate seen at each tip height
        self.before_spike: int | None = None  # the median when the spike under way began
        self.spike_began = 0  # and the height it began at

    def remember(self, height: int, rate: int) -> tuple[int, bool]:
        """Keep the first rate seen at this tip height; the usual rate, and whether a spike is under way."""
        if height not in self.rates:
            earlier = [r for h, r in self.rates.items() if height - NEXT_BLOCK_MEMORY <= h < height]
            median = int(statistics.median(earlier)) if earlier else rate
            if self.before_spike is None and rate > median * SPIKE:
                self.before_spike, self.spike_began = median, height
            elif self.before_spike is not None and (
                rate <= self.before_spike * SPIKE or height - self.spike_began >= SPIKE_BLOCKS
            ):
                self.before_spike = None
            self.rates[height] = rate
            for old in [h for h in self.rates if h < height - NEXT_BLOCK_MEMORY]:
                del self.rates[old]
        if self.before_spike is not None:
            return self.before_spike, True
        return int(statistics.median(self.rates.values())), False


class FeeEstimator:
    def __init__(self, rpc: BitcoinRpc, fallback_rate: int) -> None:
        self.rpc = rpc
        self.fallback_rate = fallback_rate
        # The best block the cached estimates belong to, and per target the estimate (None: the node has
        # none), unfloored: the floor moves between blocks, the estimates do not.
        self._best = ""
        self._estimates: dict[int, int | None] = {}
        self._next_blocks = NextBlockMemory()

    async def relay(self) -> RelayPolicy:
        return (await self.market(())).relay

    async def market(self, blocks: Iterable[int], next_block: int | None = None) -> Market:
        """The relay policy now and, for each number of blocks, the rate estimated to confirm within it,
        raised to the floor; a longer target never costs more than a shorter one. With `next_block` (the
        vbytes the caller's packages take), also the rate they need to enter the next block now. Two
        round trips at most: the policy and the best block, then the estimates this block has not
        answered yet (and the block template)."""
        targets = sorted({confirmation_target(b) for b in blocks})
        best, mempool, network = await self.rpc.batch(
            [("getbestblockhash", []), ("getmempoolinfo", []), ("getnetworkinfo", [])]
        )
        for answer in (best, mempool, network):
            if isinstance(answer, RpcError):
                raise answer
        relay = relay_policy(mempool, network)
        if best != self._best:
            self._best, self._estimates = str(best), {}
        missing = [t for t in targets if t not in self._estimates]
        calls = [("estimatesmartfee", [t, "economical"]) for t in missing]
        if next_block is not None:
            calls.append(("getblocktemplate", [{"rules": ["segwit"]}]))
        answers = await self.rpc.batch(calls)
        template = answers.pop() if next_block is not None else None
        for target, answer in zip(missing, answers, strict=True):
            feerate = answer.get("feerate") if isinstance(answer, dict) else None
            self._estimates[target] = btc_to_sat(feerate) if feerate is not None else None
        estimates: dict[int, int] = {}
        ceiling: int | None = None  # of bitcoind's own estimates only: a fallback caps none of them
        for target in targets:
            known = self._estimates[target]
            rate = relay.raised(known if known is not None else self.fallback_rate)
            estimates[target] = rate if ceiling is None else min(ceiling, rate)
            if known is not None:
                ceiling = estimates[target]
        unestimated = frozenset(t for t in targets if self._estimates[t] is None)
        if not isinstance(template, dict):
            return Market(relay, estimates, not unestimated, unestimated=unestimated)
        rate = one = relay.floor
        transactions = template["transactions"]
        backlog = has_backlog(int(mempool["bytes"]), template_vsize(transactions))
        if backlog:
            rate = next_block_rate(transactions, max(next_block or 0, PACKAGE_ROOM), relay)
            one = next_block_rate(transactions, PACKAGE_ROOM, relay)
        # The memory keeps one package's rate whatever room each caller asks for, so that every height's
        # is measured alike.
        usual, spike = self._next_blocks.remember(int(template["height"]) - 1, one)
        rising = is_rising(one, usual, spike)
        return Market(relay, estimates, not unestimated, rate, usual, spike, rising, not backlog, unestimated)

    async def rate_or_estimate(self, given: int | None, speed: Speed) -> int:
        """The rate a request gave (the user's choice wins), else the estimate for `speed`."""
        if given is not None:
            return given
        return (await self.rates()).at(speed)

    async def rates(self) -> FeeRates:
        market = await self.market(CONFIRMATION_TARGETS)
        fast, regular, slow = (market.estimates[t] for t in CONFIRMATION_TARGETS)
        return FeeRates(fast=fast, regular=regular, slow=slow, estimated=market.estimated)
