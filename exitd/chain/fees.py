"""Fee-rate estimates from bitcoind, in sat/kvB, cached per block.

Estimates only change when a block arrives, and a cycle over many exits asks many times, so one
`estimatesmartfee` batch per best block is enough. A node without an estimate (regtest, a fresh node)
yields the configured fallback, never zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from exitd.chain.rpc import BitcoinRpc

SATS_PER_BTC = 100_000_000
CONFIRMATION_TARGETS = (1, 3, 6)


@dataclass(frozen=True)
class FeeRates:
    """sat/kvB for ~1, ~3 and ~6 blocks; `estimated` is False when a fallback stood in."""

    fast: int
    regular: int
    slow: int
    estimated: bool


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


class FeeEstimator:
    def __init__(self, rpc: BitcoinRpc, fallback_rate: int, min_rate: int) -> None:
        self.rpc = rpc
        self.fallback_rate = fallback_rate
        self.min_rate = min_rate
        self._cache: tuple[str, FeeRates] | None = None

    async def rates(self) -> FeeRates:
        best = await self.rpc.call("getbestblockhash")
        if self._cache is not None and self._cache[0] == best:
            return self._cache[1]
        answers = await self.rpc.batch(
            ("estimatesmartfee", [target, "economical"]) for target in CONFIRMATION_TARGETS
        )
        rates: list[int] = []
        estimated = True
        for answer in answers:
            if isinstance(answer, dict) and "feerate" in answer:
                rates.append(max(self.min_rate, btc_to_sat(answer["feerate"])))
            else:
                rates.append(self.fallback_rate)
                estimated = False
        # A longer target never needs a higher rate than a shorter one.
        fast = rates[0]
        regular = min(rates[1], fast)
        slow = min(rates[2], regular)
        result = FeeRates(fast=fast, regular=regular, slow=slow, estimated=estimated)
        self._cache = (best, result)
        return result
