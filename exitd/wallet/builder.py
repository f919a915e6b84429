"""The wallet's transactions, from chosen coins to BIP86 key-path signatures: sends, drains, CPFP children.

Pure functions: the caller lists the coins, gets a change script and broadcasts. A wallet input's weight is
known exactly before signing (BIP340 signatures are always 64 bytes), so the fee of a transaction with k
wallet inputs is exact before any coin is chosen, and no draft has to be signed twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from bitcoin.core import (
    CMutableTransaction,
    CMutableTxIn,
    CMutableTxOut,
    COutPoint,
    CScript,
    CTransaction,
    CTxInWitness,
    CTxWitness,
)
from bitcoin.core.script import CScriptWitness

from exitd.ark.encoding import OutPoint, TxOut, ser_compact_size
from exitd.ark.key import schnorr_sign
from exitd.ark.script import P2A_SCRIPT
from exitd.ark.sighash import taproot_sighash
from exitd.ark.weight import TXIN_BASE_SIZE, WITNESS_SCALE_FACTOR, tx_vsize, vsize
from exitd.chain.fees import fee_at_rate
from exitd.wallet.coinselection import P2TR_KEY_PATH_INPUT_WEIGHT, Coin, select_coins
from exitd.wallet.errors import AmountBelowDust, InsufficientFunds
from exitd.wallet.keys import Bip86Account
from exitd.wallet.mempool_rules import (
    MAX_BIP125_RBF_SEQUENCE,
    MAX_STANDARD_TX_WEIGHT,
    TRUC_CHILD_MAX_VSIZE,
    TRUC_VERSION,
    dust_threshold,
)

SEND_TX_VERSION = 2
# Segwit serialization: the marker and flag bytes, counted once per transaction with any witness.
WITNESS_MARKER_AND_FLAG = 2
# An empty witness stack (the P2A anchor's) still takes its count byte once the tx has a witness.
EMPTY_WITNESS_SIZE = 1


@dataclass(frozen=True)
class Anchor:
    """The pay-to-anchor output a CPFP child spends: anyone can, with an empty witness."""

    outpoint: OutPoint
    value: int


@dataclass(frozen=True)
class Draft:
    """A transaction not yet signed: the anchor (a CPFP child's first input), then the wallet coins."""

    coins: tuple[Coin, ...]
    outputs: tuple[TxOut, ...]
    version: int
    locktime: int
    anchor: Anchor | None = None

    @property
    def prevouts(self) -> list[TxOut]:
        """What each input spends, in input order: every BIP341 signature commits to all of them."""
        anchor = [TxOut(self.anchor.value, P2A_SCRIPT)] if self.anchor is not None else []
        return anchor + [coin.txout for coin in self.coins]

    @property
    def fee(self) -> int:
        return sum(p.value for p in self.prevouts) - sum(o.value for o in self.outputs)

    def unsigned(self) -> CMutableTransaction:
        outpoints = ([self.anchor.outpoint] if self.anchor is not None else []) + [
            coin.outpoint for coin in self.coins
        ]
        return CMutableTransaction(
            [CMutableTxIn(COutPoint(o.txid, o.vout), nSequence=MAX_BIP125_RBF_SEQUENCE) for o in outpoints],
            [CMutableTxOut(o.value, CScript(o.script_pubkey)) for o in self.outputs],
            nLockTime=self.locktime,
            nVersion=self.version,
        )


def wallet_tx_vsize(n_coins: int, outputs: Sequence[TxOut], anchor: bool = False) -> int:
    """The virtual size, once signed, of a tx with `n_coins` key-path inputs (after an anchor input, if any)
    and these outputs."""
    return sized_wallet_tx_vsize(n_coins, outputs_size(outputs), anchor)


def outputs_size(outputs: Sequence[TxOut]) -> int:
    """The bytes these outputs and their count add to a tx."""
    return len(ser_compact_size(len(outputs))) + sum(len(o.encode()) for o in outputs)


def sized_wallet_tx_vsize(n_coins: int, outputs_bytes: int, anchor: bool = False) -> int:
    """wallet_tx_vsize with the outputs' size (outputs_size) known: for callers that try many input counts
    for the same outputs, where encoding the outputs again each time made a large split quadratic."""
    n_inputs = n_coins + anchor
    stripped = (
        4  # nVersion
        + len(ser_compact_size(n_inputs))
        + n_inputs * TXIN_BASE_SIZE
        + outputs_bytes
        + 4  # nLockTime
    )
    witness = 0
    if n_coins:
        witness = WITNESS_MARKER_AND_FLAG + anchor * EMPTY_WITNESS_SIZE
        witness += n_coins * (P2TR_KEY_PATH_INPUT_WEIGHT - TXIN_BASE_SIZE * WITNESS_SCALE_FACTOR)
    return vsize(stripped * WITNESS_SCALE_FACTOR + witness)


def max_wallet_inputs(outputs: Sequence[TxOut], max_vsize: int, anchor: bool = False) -> int:
    """The most key-path inputs a tx with these outputs may have and stay within `max_vsize`."""
    n = (max_vsize * WITNESS_SCALE_FACTOR) // P2TR_KEY_PATH_INPUT_WEIGHT
    size = outputs_size(outputs)
    while n > 0 and sized_wallet_tx_vsize(n, size, anchor) > max_vsize:
        n -= 1
    return n


@dataclass(frozen=True)
class Replacing:
    """The package a new child replaces: the fee it paid (sat), and the node's incremental relay fee
    (sat/kvB), which the replacement must add for its own size."""

    fee: int
    incremental_rate: int


def package_fee(target_rate: int, package_vsize: int, replacing: Replacing | None = None) -> int:
    """The fee a package of `package_vsize` pays at `target_rate` (sat/kvB); when it replaces a package,
    also at least what that paid plus the incremental relay fee for its own size (BIP125 rule 4, counted
    over the whole package)."""
    fee = fee_at_rate(target_rate, package_vsize)
    if replacing is not None:
        fee = max(fee, replacing.fee + fee_at_rate(replacing.incremental_rate, package_vsize))
    return fee


def plan_payment(
    coins: Sequence[Coin], payments: Sequence[TxOut], change_spk: bytes, fee_rate: int, locktime: int
) -> Draft:
    """A send to `payments` at `fee_rate`; the leftover becomes change (at a random position, as Core
    does) when it clears the change output's own fee and its dust threshold, else it goes to the fee."""
    for payment in payments:
        dust = dust_threshold(payment.script_pubkey)
        if payment.value < dust:
            raise AmountBelowDust(payment.value, dust)
    amount = sum(p.value for p in payments)
    max_inputs = max_wallet_inputs(payments, MAX_STANDARD_TX_WEIGHT // WITNESS_SCALE_FACTOR)
    size = outputs_size(payments)
    chosen = select_coins(
        coins, lambda k: amount + fee_at_rate(fee_rate, sized_wallet_tx_vsize(k, size)), max_inputs
    )
    with_change = [*payments, TxOut(0, change_spk)]
    change = (
        sum(c.value for c in chosen)
        - amount
        - fee_at_rate(fee_rate, wallet_tx_vsize(len(chosen), with_change))
    )
    outputs = list(payments)
    if change >= dust_threshold(change_spk):
        outputs.insert(secrets.randbelow(len(outputs) + 1), TxOut(change, change_spk))
    return Draft(tuple(chosen), tuple(outputs), SEND_TX_VERSION, locktime)


def plan_drain(coins: Sequence[Coin], destination_spk: bytes, fee_rate: int, locktime: int) -> Draft:
    """Every coin to one output, less the fee at `fee_rate`."""
    fee = fee_at_rate(fee_rate, wallet_tx_vsize(max(1, len(coins)), [TxOut(0, destination_spk)]))
    total = sum(c.value for c in coins)
    dust = dust_threshold(destination_spk)
    if total - fee < dust:
        raise InsufficientFunds(fee + dust, total)
    return Draft(tuple(coins), (TxOut(total - fee, destination_spk),), SEND_TX_VERSION, locktime)


def plan_fan_out(
    coins: Sequence[Coin], coins_out: Sequence[TxOut], leftover_spk: bytes, fee_rate: int, locktime: int
) -> Draft:
    """A version-2 tx splitting wallet coins into `coins_out` (new coins of the wallet's), at `fee_rate`.

    What is left over becomes one more coin, to `leftover_spk`, when it is worth at least the smallest of
    `coins_out` (a smaller coin would pay for nothing the split is made for); else it goes to the largest
    one. So no coin below a useful size is made, and dust never is.
    """
    for out in coins_out:
        dust = dust_threshold(out.script_pubkey)
        if out.value < dust:
            raise AmountBelowDust(out.value, dust)
    with_leftover = [*coins_out, TxOut(0, leftover_spk)]
    total = sum(o.value for o in coins_out)
    max_inputs = max_wallet_inputs(with_leftover, MAX_STANDARD_TX_WEIGHT // WITNESS_SCALE_FACTOR)
    size = outputs_size(with_leftover)
    chosen = select_coins(
        coins, lambda k: total + fee_at_rate(fee_rate, sized_wallet_tx_vsize(k, size)), max_inputs
    )
    value = sum(c.value for c in chosen)
    leftover = value - total - fee_at_rate(fee_rate, wallet_tx_vsize(len(chosen), with_leftover))
    outputs = list(coins_out)
    if leftover >= min(o.value for o in coins_out):
        outputs.append(TxOut(leftover, leftover_spk))
    else:
        largest = max(range(len(outputs)), key=lambda i: outputs[i].value)
        fee = fee_at_rate(fee_rate, wallet_tx_vsize(len(chosen), coins_out))
        outputs[largest] = TxOut(value - total - fee + outputs[largest].value, outputs[largest].script_pubkey)
    return Draft(tuple(chosen), tuple(outputs), SEND_TX_VERSION, locktime)


def fee_anchor(parent: CTransaction) -> Anchor:
    """The parent's P2A output, which exit txs always put last."""
    vout = len(parent.vout) - 1
    if vout < 0 or bytes(parent.vout[vout].scriptPubKey) != P2A_SCRIPT:
        raise ValueError("the parent's last output is not a pay-to-anchor output")
    return Anchor(OutPoint(parent.GetTxid(), vout), int(parent.vout[vout].nValue))


def plan_cpfp_child(
    parent: CTransaction,
    coins: Sequence[Coin],
    change_spk: bytes,
    target_rate: int,
    replacing: Replacing | None,
    locktime: int,
    floor: int = 0,
) -> Draft:
    """A TRUC child spending the parent's anchor and confirmed wallet coins into one change output.

    The parent pays nothing, so the child pays for both: its fee is the package's at `target_rate` over
    the parent's size plus the child's own signed size (exact for each number of inputs, see
    wallet_tx_vsize), at least the RBF minimum when replacing. The anchor's value counts as input.
    `floor`: the coin the funding plan meant for this level's chain is worth at least this (select_coins).
    """
    if parent.nVersion != TRUC_VERSION:
        raise ValueError(f"a CPFP child of a version {parent.nVersion} parent would not be a TRUC package")
    anchor = fee_anchor(parent)
    parent_vsize = tx_vsize(parent)
    change_only = [TxOut(0, change_spk)]

    def fee(k: int) -> int:
        return package_fee(target_rate, parent_vsize + wallet_tx_vsize(k, change_only, True), replacing)

    dust = dust_threshold(change_spk)
    max_inputs = max_wallet_inputs(change_only, TRUC_CHILD_MAX_VSIZE, True)
    chosen = select_coins(coins, lambda k: fee(k) + dust - anchor.value, max_inputs, floor)
    change = anchor.value + sum(c.value for c in chosen) - fee(len(chosen))
    return Draft(tuple(chosen), (TxOut(change, change_spk),), TRUC_VERSION, locktime, anchor)


def sign(draft: Draft, account: Bip86Account) -> CTransaction:
    """BIP86 key-path signatures (SIGHASH_DEFAULT) on every wallet input; the anchor's witness is empty."""
    tx = draft.unsigned()
    prevouts = draft.prevouts
    first = len(prevouts) - len(draft.coins)
    stacks: list[list[bytes]] = [[] for _ in range(first)]
    for i, coin in enumerate(draft.coins, start=first):
        secret = account.signing_key(coin.keychain, coin.index)
        stacks.append([schnorr_sign(secret, taproot_sighash(tx, i, prevouts))])
    tx.wit = CTxWitness([CTxInWitness(CScriptWitness(stack)) for stack in stacks])
    return CTransaction.from_tx(tx)
