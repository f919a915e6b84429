"""Choosing wallet coins: the fewest inputs that pay for a transaction.

Every wallet coin is a BIP86 output spent by key path, so each input adds the same weight and the builder
knows need(k), the coin value a transaction with k wallet inputs must gather (its outputs, its fee at k
inputs, a change floor), before choosing which k. The rule (Core's old "lowest larger" with a fewest-inputs
fallback, a sound equivalent of branch-and-bound for same-sized inputs):
- the smallest single coin that covers need(1): large coins stay whole and the leftover is small; with a
  floor (a CPFP child's, from the funding plan in exitd/wallet/planner.py), the smallest single coin worth
  the floor first: a coin carrying its whole chain of levels, whose change pays for the next level;
- else the k largest coins for the smallest k that covers need(k); no k coins are worth more.
The builder then turns the leftover into change if it clears the change output's fee and dust threshold,
and into fee otherwise, so change below dust is never made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from exitd.ark.encoding import SCHNORR_SIG_LEN, OutPoint, TxOut
from exitd.ark.weight import TXIN_BASE_SIZE, WITNESS_SCALE_FACTOR
from exitd.wallet.errors import InsufficientFunds
from exitd.wallet.keys import Keychain

# A key-path spend: the input itself, then a witness of one stack item (1), a 64-byte BIP340 signature with
# SIGHASH_DEFAULT (1 + 64).
P2TR_KEY_PATH_INPUT_WEIGHT = TXIN_BASE_SIZE * WITNESS_SCALE_FACTOR + 1 + 1 + SCHNORR_SIG_LEN


@dataclass(frozen=True)
class Coin:
    """A wallet UTXO as bitcoind reports it, with the BIP86 key that spends it."""

    outpoint: OutPoint
    value: int
    script_pubkey: bytes
    keychain: Keychain
    index: int
    # The block it was confirmed in; None while unconfirmed.
    height: int | None
    # bitcoind's "safe": confirmed, or unconfirmed but made by this wallet (not double-spendable by others).
    trusted: bool

    @property
    def confirmed(self) -> bool:
        return self.height is not None

    @property
    def txout(self) -> TxOut:
        return TxOut(self.value, self.script_pubkey)

    @cached_property
    def selection_order(self) -> tuple[int, str]:
        """select_coins' order: by value, equal values by outpoint. Kept: a cycle that builds eighty
        children orders the same thousand coins eighty times."""
        return (self.value, str(self.outpoint))


def coin_order(coin: Coin) -> tuple[int, str]:
    """The order select_coins takes coins in; a list already in it sorts in one pass."""
    return coin.selection_order


def select_coins(
    coins: Sequence[Coin], need: Callable[[int], int], max_inputs: int, floor: int = 0
) -> list[Coin]:
    """The fewest coins whose value reaches need(k) for k inputs, or InsufficientFunds.

    need(0) <= 0 (an anchor that pays for its own child) selects nothing. `max_inputs` bounds k (a TRUC
    child's size limit); InsufficientFunds then counts only the coins that could be used. A single coin
    worth `floor` is preferred to a smaller single coin that only covers need(1).
    """
    if need(0) <= 0:
        return []
    by_value = sorted(coins, key=coin_order)
    if max_inputs >= 1:
        single = next((c for c in by_value if c.value >= max(need(1), floor)), None) or next(
            (c for c in by_value if c.value >= need(1)), None
        )
        if single is not None:
            return [single]
    usable = by_value[::-1][:max_inputs]
    total = 0
    for k, coin in enumerate(usable, start=1):
        total += coin.value
        if total >= need(k):
            return usable[:k]
    raise InsufficientFunds(need(max(1, len(usable))), total)
