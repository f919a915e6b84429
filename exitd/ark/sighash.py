"""BIP341 signature messages and hashes (taproot key path and tapscript, BIP342).

Unlike legacy and segwit v0 signing, a taproot signature commits to the amounts and scripts of
all spent outputs, so the caller passes every prevout as (amount in sats, scriptPubKey), in input
order. Transactions are python-bitcoinlib CTransaction / CMutableTransaction objects.
"""

from collections.abc import Sequence

from bitcoin.core import CTransaction
from bitcoin.core.serialize import BytesSerializer

from exitd.ark.hashes import sha256, tagged_hash
from exitd.ark.taproot import TAPROOT_LEAF_MASK, TAPROOT_LEAF_TAPSCRIPT, tap_leaf_hash

SIGHASH_DEFAULT = 0x00  # like ALL, but encoded as a 64-byte signature without a hash type byte
SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_ANYONECANPAY = 0x80
TAPROOT_SIGHASH_TYPES = frozenset(
    {
        SIGHASH_DEFAULT,
        SIGHASH_ALL,
        SIGHASH_NONE,
        SIGHASH_SINGLE,
        SIGHASH_ANYONECANPAY | SIGHASH_ALL,
        SIGHASH_ANYONECANPAY | SIGHASH_NONE,
        SIGHASH_ANYONECANPAY | SIGHASH_SINGLE,
    }
)
ANNEX_TAG = 0x50
# No OP_CODESEPARATOR executed: the value BIP342 prescribes for codesep_pos.
CODESEP_POS_NONE = 0xFFFFFFFF

Prevout = tuple[int, bytes]


def sha_prevouts(tx: CTransaction) -> bytes:
    return sha256(b"".join(txin.prevout.serialize() for txin in tx.vin))


def sha_amounts(prevouts: Sequence[Prevout]) -> bytes:
    return sha256(b"".join(amount.to_bytes(8, "little") for amount, _ in prevouts))


def sha_scriptpubkeys(prevouts: Sequence[Prevout]) -> bytes:
    return sha256(b"".join(BytesSerializer.serialize(spk) for _, spk in prevouts))


def sha_sequences(tx: CTransaction) -> bytes:
    return sha256(b"".join(txin.nSequence.to_bytes(4, "little") for txin in tx.vin))


def sha_outputs(tx: CTransaction) -> bytes:
    return sha256(b"".join(txout.serialize() for txout in tx.vout))


def taproot_signature_msg(
    tx: CTransaction,
    input_index: int,
    prevouts: Sequence[Prevout],
    hash_type: int = SIGHASH_DEFAULT,
    leaf_script: bytes | None = None,
    leaf_version: int = TAPROOT_LEAF_TAPSCRIPT,
    annex: bytes | None = None,
    codesep_pos: int = CODESEP_POS_NONE,
) -> bytes:
    """The BIP341 SigMsg, preceded by the sighash epoch byte 0x00.

    A leaf_script makes it a script-path message (BIP342 extension: leaf hash, key version 0,
    codesep_pos); without one it is a key-path message. ANYONECANPAY commits to this input's
    prevout alone, NONE to no output, SINGLE to the output at input_index only.
    """
    if hash_type not in TAPROOT_SIGHASH_TYPES:
        raise ValueError(f"invalid taproot sighash type {hash_type:#04x}")
    if not 0 <= input_index < len(tx.vin):
        raise ValueError(f"input index {input_index} out of range for {len(tx.vin)} inputs")
    if len(prevouts) != len(tx.vin):
        raise ValueError(f"need one prevout per input: {len(prevouts)} given for {len(tx.vin)} inputs")
    if annex is not None and (not annex or annex[0] != ANNEX_TAG):
        raise ValueError("an annex starts with the byte 0x50")
    if leaf_version & TAPROOT_LEAF_MASK != leaf_version:
        raise ValueError(f"invalid leaf version {leaf_version:#x}")
    if not 0 <= codesep_pos <= 0xFFFFFFFF:
        raise ValueError("codesep_pos is a 32-bit opcode position")
    output_type = hash_type & 0x03
    anyone_can_pay = bool(hash_type & SIGHASH_ANYONECANPAY)
    if output_type == SIGHASH_SINGLE and input_index >= len(tx.vout):
        raise ValueError(f"SIGHASH_SINGLE input {input_index} has no output at the same index")

    msg = bytes([0x00, hash_type])  # epoch 0
    msg += (tx.nVersion & 0xFFFFFFFF).to_bytes(4, "little")
    msg += tx.nLockTime.to_bytes(4, "little")
    if not anyone_can_pay:
        msg += sha_prevouts(tx) + sha_amounts(prevouts) + sha_scriptpubkeys(prevouts) + sha_sequences(tx)
    if output_type not in (SIGHASH_NONE, SIGHASH_SINGLE):
        msg += sha_outputs(tx)
    ext_flag = 0 if leaf_script is None else 1
    msg += bytes([2 * ext_flag + (annex is not None)])  # spend_type
    if anyone_can_pay:
        txin = tx.vin[input_index]
        amount, spk = prevouts[input_index]
        msg += txin.prevout.serialize() + amount.to_bytes(8, "little") + BytesSerializer.serialize(spk)
        msg += txin.nSequence.to_bytes(4, "little")
    else:
        msg += input_index.to_bytes(4, "little")
    if annex is not None:
        msg += sha256(BytesSerializer.serialize(annex))
    if output_type == SIGHASH_SINGLE:
        msg += sha256(tx.vout[input_index].serialize())
    if leaf_script is not None:
        msg += tap_leaf_hash(leaf_script, leaf_version) + bytes([0x00]) + codesep_pos.to_bytes(4, "little")
    return msg


def taproot_sighash(
    tx: CTransaction,
    input_index: int,
    prevouts: Sequence[Prevout],
    hash_type: int = SIGHASH_DEFAULT,
    leaf_script: bytes | None = None,
    leaf_version: int = TAPROOT_LEAF_TAPSCRIPT,
    annex: bytes | None = None,
    codesep_pos: int = CODESEP_POS_NONE,
) -> bytes:
    """The 32-byte message a BIP340 signature on this input signs: H_TapSighash(SigMsg)."""
    msg = taproot_signature_msg(
        tx, input_index, prevouts, hash_type, leaf_script, leaf_version, annex, codesep_pos
    )
    return tagged_hash("TapSighash", msg)
