"""The mempool policy the wallet builds for: dust, TRUC (version 3) limits and replacement fees.

Values are Bitcoin Core's defaults (policy/policy.h, policy/truc_policy.h, policy/rbf.h). A transaction that
breaks them is refused by every node with default settings, so the builders keep to them before signing.
"""

from __future__ import annotations

from exitd.ark.encoding import ser_compact_size
from exitd.ark.script import witness_program
from exitd.ark.weight import TXIN_BASE_SIZE, WITNESS_SCALE_FACTOR
from exitd.chain.fees import fee_at_rate

# sat/kvB. An output worth less than what spending it costs at this rate is dust.
DUST_RELAY_TX_FEE = 3000
# Core's wallet default nSequence: signals replaceability (BIP125) and enables nLockTime.
MAX_BIP125_RBF_SEQUENCE = 0xFFFF_FFFD
# Policy limit on one standard transaction (MAX_STANDARD_TX_WEIGHT).
MAX_STANDARD_TX_WEIGHT = 400_000

TRUC_VERSION = 3
# A TRUC child of an unconfirmed TRUC parent may have at most this virtual size.
TRUC_CHILD_MAX_VSIZE = 1000

# The scriptSig and witness of the cheapest usual spend, which GetDustThreshold assumes: a P2PKH-sized
# input of 148 bytes, or its segwit-discounted equivalent for witness programs.
_LEGACY_SPEND_SCRIPT_SIZE = 107


def dust_threshold(script_pubkey: bytes) -> int:
    """GetDustThreshold: the smallest value an output to `script_pubkey` may carry and still be relayed.

    It is the fee, at DUST_RELAY_TX_FEE, of the output plus an input spending it: 546 sat for P2PKH, 540 for
    P2SH, 294 for P2WPKH and 330 for P2WSH and P2TR. Addresses never decode to OP_RETURN, so the
    unspendable case (threshold 0) does not arise here.
    """
    size = 8 + len(ser_compact_size(len(script_pubkey))) + len(script_pubkey)
    if witness_program(script_pubkey) is not None:
        size += TXIN_BASE_SIZE + _LEGACY_SPEND_SCRIPT_SIZE // WITNESS_SCALE_FACTOR
    else:
        size += TXIN_BASE_SIZE + _LEGACY_SPEND_SCRIPT_SIZE
    return fee_at_rate(DUST_RELAY_TX_FEE, size)
