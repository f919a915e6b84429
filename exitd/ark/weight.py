"""Transaction weight and virtual size (BIP141), counted as Bitcoin Core's policy counts them.

Fees are paid per virtual byte, so every builder that aims at a fee rate measures its transaction here.
"""

from __future__ import annotations

from bitcoin.core import CMutableTransaction, CTransaction

WITNESS_SCALE_FACTOR = 4
# An input without its witness: outpoint (32 + 4) + empty scriptSig (1) + nSequence (4).
TXIN_BASE_SIZE = 41


def tx_weight(tx: CTransaction | CMutableTransaction) -> int:
    """GetTransactionWeight: the stripped size counts WITNESS_SCALE_FACTOR times, the witness once."""
    stripped = len(tx.serialize(params={"include_witness": False}))
    return stripped * (WITNESS_SCALE_FACTOR - 1) + len(tx.serialize())


def vsize(weight: int) -> int:
    """GetVirtualTransactionSize (no sigop adjustment: our scripts have no legacy sigops): weight / 4,
    rounded up."""
    return -(-weight // WITNESS_SCALE_FACTOR)


def tx_vsize(tx: CTransaction | CMutableTransaction) -> int:
    return vsize(tx_weight(tx))
