"""Claiming exited VTXO outputs: the user's script-path spend of each final output, after its delay.

The claim tx itself (destination, fee, wallet inputs) is built elsewhere; here each VTXO input gets its
relative timelock and its witness `[sig, (preimage,) leaf script, control block]`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bitcoin.core import CMutableTransaction, CMutableTxIn, CTxInWitness, CTxWitness
from bitcoin.core.script import CScriptWitness

from exitd.ark.encoding import LOCKTIME_THRESHOLD, SCHNORR_SIG_LEN, ser_compact_size
from exitd.ark.hashes import sha256
from exitd.ark.key import pubkey_from_seckey, schnorr_sign, xonly
from exitd.ark.policy import PREIMAGE_LEN, ClaimClause
from exitd.ark.sighash import ANNEX_TAG, Prevout, taproot_sighash
from exitd.ark.weight import TXIN_BASE_SIZE, WITNESS_SCALE_FACTOR

# BIP68 relative locktimes need tx version 2 or later.
MIN_CLAIM_TX_VERSION = 2

# BIP68: the low 16 bits of nSequence are the delay; with the type flag (bit 22) clear it counts blocks.
SEQUENCE_LOCKTIME_MASK = 0x0000_FFFF


class ClaimError(ValueError):
    """The claim tx or the claim inputs given cannot produce a valid spend."""


@dataclass(frozen=True)
class ClaimSigner:
    """What signs one claim input: the clause it satisfies and the user's secret key (and, for an HTLC
    receive, the payment preimage)."""

    clause: ClaimClause
    secret_key: bytes
    preimage: bytes | None = None


def _check_signer(index: int, signer: ClaimSigner, prevout: Prevout) -> None:
    clause = signer.clause
    if prevout[1] != clause.script_pubkey:
        raise ClaimError(f"input {index}: prevout script is not the VTXO output the clause spends")
    if xonly(pubkey_from_seckey(signer.secret_key)) != xonly(clause.user_pubkey):
        raise ClaimError(f"input {index}: secret key does not belong to the clause's user key")
    if clause.payment_hash is None:
        if signer.preimage is not None:
            raise ClaimError(f"input {index}: clause takes no preimage")
    elif (
        signer.preimage is None
        or len(signer.preimage) != PREIMAGE_LEN
        or sha256(signer.preimage) != clause.payment_hash
    ):
        raise ClaimError(f"input {index}: a {PREIMAGE_LEN}-byte preimage of the payment hash is required")
    if clause.csv_blocks > SEQUENCE_LOCKTIME_MASK:
        raise ClaimError(f"input {index}: CSV of {clause.csv_blocks} blocks does not fit nSequence")


def _check_locktime(index: int, tx: CMutableTransaction, clause: ClaimClause) -> None:
    if clause.cltv_height is None:
        return
    if not clause.cltv_height <= tx.nLockTime < LOCKTIME_THRESHOLD:
        raise ClaimError(
            f"input {index}: nLockTime {tx.nLockTime} must be a height of at least {clause.cltv_height}"
        )


def sign_claim_inputs(
    tx: CMutableTransaction,
    prevouts: Sequence[Prevout],
    signers: Mapping[int, ClaimSigner],
) -> None:
    """Set nSequence and the witness of every input in `signers` (by input index), in place.

    `prevouts` lists (value, scriptPubKey) of every input, since a BIP341 signature commits to all of
    them. All sequences are set before any signing, because each signature commits to all of them too.
    Other inputs (wallet funding, say) are left alone for their own signer.
    """
    if tx.nVersion < MIN_CLAIM_TX_VERSION:
        raise ClaimError(f"tx version {tx.nVersion} cannot use relative timelocks (need >= 2)")
    if len(prevouts) != len(tx.vin):
        raise ClaimError(f"{len(prevouts)} prevouts given for {len(tx.vin)} inputs")
    for index, signer in signers.items():
        if not 0 <= index < len(tx.vin):
            raise ClaimError(f"no input {index} in a tx of {len(tx.vin)} inputs")
        _check_signer(index, signer, prevouts[index])
        _check_locktime(index, tx, signer.clause)
        txin = tx.vin[index]
        tx.vin[index] = CMutableTxIn(txin.prevout, txin.scriptSig, signer.clause.csv_blocks)

    stacks = [list(txinwit.scriptWitness.stack) for txinwit in tx.wit.vtxinwit]
    stacks += [[] for _ in range(len(tx.vin) - len(stacks))]
    for index, signer in signers.items():
        clause = signer.clause
        msg = taproot_sighash(tx, index, prevouts, leaf_script=clause.leaf_script)
        sig = schnorr_sign(signer.secret_key, msg)
        preimage = [] if signer.preimage is None else [signer.preimage]
        stacks[index] = [sig, *preimage, clause.leaf_script, clause.control_block]
    tx.wit = CTxWitness([CTxInWitness(CScriptWitness(stack)) for stack in stacks])


def spends_through(witness: Sequence[bytes], leaf_script: bytes) -> bool:
    """Whether a taproot input's witness is a script-path spend of `leaf_script` (BIP341: the last item is
    the control block, after an optional annex, and the one before it the script); a key-path spend (one
    signature) is not."""
    stack = list(witness)
    if len(stack) >= 2 and stack[-1][:1] == bytes([ANNEX_TAG]):
        stack.pop()
    return len(stack) >= 2 and stack[-2] == leaf_script


def claim_input_weight(clause: ClaimClause) -> int:
    """Weight units one claim input adds to a segwit tx (the tx-wide marker and flag not included)."""
    items = [SCHNORR_SIG_LEN]
    if clause.needs_preimage:
        items.append(PREIMAGE_LEN)
    items += [len(clause.leaf_script), len(clause.control_block)]
    witness_size = len(ser_compact_size(len(items))) + sum(len(ser_compact_size(n)) + n for n in items)
    return TXIN_BASE_SIZE * WITNESS_SCALE_FACTOR + witness_size
