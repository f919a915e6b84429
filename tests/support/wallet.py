"""A wallet for tests without a node: BIP39's `abandon ... about` account on regtest, coins of it, and a
zero-fee TRUC parent as bark makes them."""

from __future__ import annotations

from bitcoin.core import CMutableTxIn, CMutableTxOut, COutPoint, CScript, CTransaction

from exitd.ark.encoding import OutPoint
from exitd.ark.script import P2A_SCRIPT, p2tr_script
from exitd.wallet.coinselection import Coin
from exitd.wallet.keys import Bip86Account, Keychain

ABANDON_ABOUT = "abandon " * 11 + "about"
ACCOUNT = Bip86Account.from_mnemonic(ABANDON_ABOUT, "regtest")
DESTINATION = p2tr_script(bytes(range(32)))


def coin(value: int, n: int = 0, index: int = 0) -> Coin:
    spk = ACCOUNT.script_pubkey(Keychain.EXTERNAL, index)
    return Coin(OutPoint(bytes([n + 1]) * 32, n), value, spk, Keychain.EXTERNAL, index, 100, True)


def zero_fee_parent(anchor_value: int = 0) -> CTransaction:
    """A TRUC exit tx as bark makes them: zero fee, its P2A anchor last."""
    return CTransaction(
        [CMutableTxIn(COutPoint(bytes(32), 0), nSequence=0)],
        [CMutableTxOut(10_000, CScript(DESTINATION)), CMutableTxOut(anchor_value, CScript(P2A_SCRIPT))],
        nVersion=3,
    )
