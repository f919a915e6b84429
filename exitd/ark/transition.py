"""Genesis transitions: how the output an exit tx spends is locked, and the witness that unlocks it.

The encoding never stores the script of the spent output; each transition kind knows how to derive it
from its keys and the VTXO's server key, exit delta and expiry height. That derivation is what lets the
decoder recompute every txid and check it against the VTXO id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from bitcoin.core import CTransaction

from exitd.ark.encoding import (
    ByteReader,
    InvalidStructure,
    UnknownType,
    ser_opt_signature,
    ser_u8,
    ser_vector,
)
from exitd.ark.hashes import sha256
from exitd.ark.key import tweak_xonly, xonly
from exitd.ark.musig import key_agg
from exitd.ark.policy import HarkLeafPolicy, HashLockVersion, timelock_sign, user_server_key
from exitd.ark.script import p2tr_script
from exitd.ark.sighash import Prevout, taproot_sighash
from exitd.ark.taproot import TaprootInfo, taproot_from_leaves

# Far above the keys of any tree node bark builds, low enough that a hostile count cannot make us
# aggregate millions of keys.
MAX_TRANSITION_KEYS = 65_536


class TransitionType(IntEnum):
    """The transition's type byte on the wire."""

    COSIGNED = 1
    ARKOOR = 2
    HASH_LOCKED_COSIGNED_V0 = 3
    HASH_LOCKED_COSIGNED = 4

    @property
    def kind(self) -> str:
        return _TRANSITION_KINDS[self]


_TRANSITION_KINDS = {
    TransitionType.COSIGNED: "cosigned",
    TransitionType.ARKOOR: "arkoor",
    TransitionType.HASH_LOCKED_COSIGNED_V0: "hash-locked-cosigned",
    TransitionType.HASH_LOCKED_COSIGNED: "hash-locked-cosigned-v1",
}


class UnlockFlag(IntEnum):
    """What the 32 bytes after a hash-locked transition's flag are."""

    PREIMAGE = 0
    UNLOCK_HASH = 1


def _read_keys(r: ByteReader, what: str) -> tuple[bytes, ...]:
    n = r.count(what, MAX_TRANSITION_KEYS)
    return tuple(r.pubkey(f"{what} #{i}") for i in range(n))


class Transition(ABC):
    """One genesis item's input side. Subclasses are frozen dataclasses."""

    signature: bytes | None

    @property
    @abstractmethod
    def type(self) -> TransitionType: ...

    @abstractmethod
    def encode_fields(self) -> bytes: ...

    @abstractmethod
    def input_script_pubkey(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> bytes:
        """The scriptPubKey of the output this transition spends."""

    @abstractmethod
    def witness(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> list[bytes]:
        """The input witness; empty while anything needed to spend is still missing."""

    @abstractmethod
    def sighash_and_key(
        self,
        tx: CTransaction,
        prevout: Prevout,
        server_pubkey: bytes,
        exit_delta: int,
        expiry_height: int,
    ) -> tuple[bytes, bytes]:
        """What the stored signature signs for input 0 of `tx` spending `prevout`, and the x-only key
        it must verify against."""

    @property
    def kind(self) -> str:
        return self.type.kind

    @property
    def is_complete(self) -> bool:
        """Whether the witness can be built, i.e. the tx can be broadcast."""
        return self.signature is not None

    def encode(self) -> bytes:
        return ser_u8(self.type) + self.encode_fields()


class KeySpendTransition(Transition):
    """A transition whose stored signature spends the output key directly (BIP341 key path)."""

    def witness(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> list[bytes]:
        return [] if self.signature is None else [self.signature]

    def sighash_and_key(
        self,
        tx: CTransaction,
        prevout: Prevout,
        server_pubkey: bytes,
        exit_delta: int,
        expiry_height: int,
    ) -> tuple[bytes, bytes]:
        return _key_spend_sighash_and_key(tx, prevout)


def _key_spend_sighash_and_key(tx: CTransaction, prevout: Prevout) -> tuple[bytes, bytes]:
    """A BIP341 key-path spend signs for the prevout's output key (its scriptPubKey minus `OP_1 <32>`)."""
    return taproot_sighash(tx, 0, [prevout]), prevout[1][2:]


@dataclass(frozen=True)
class CosignedTransition(KeySpendTransition):
    """Spends an output locked to MuSig(pubkeys), with the server's sweep after expiry as the only leaf:
    a board's funding output or a round tree node."""

    pubkeys: tuple[bytes, ...]
    signature: bytes | None

    @property
    def type(self) -> TransitionType:
        return TransitionType.COSIGNED

    def encode_fields(self) -> bytes:
        return ser_vector(self.pubkeys) + ser_opt_signature(self.signature)

    @classmethod
    def decode_fields(cls, r: ByteReader) -> Self:
        start = r.offset
        pubkeys = _read_keys(r, "cosigned pubkeys")
        if not pubkeys:
            raise InvalidStructure(start, "cosigned transition with an empty key list")
        return cls(pubkeys, r.opt_signature("cosigned signature"))

    def input_taproot(self, server_pubkey: bytes, expiry_height: int) -> TaprootInfo:
        sweep = timelock_sign(expiry_height, xonly(server_pubkey))
        return taproot_from_leaves(xonly(key_agg(list(self.pubkeys))), [sweep])

    def input_script_pubkey(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> bytes:
        return self.input_taproot(server_pubkey, expiry_height).script_pubkey


@dataclass(frozen=True)
class ArkoorTransition(KeySpendTransition):
    """Spends a VTXO-policy output out of round (checkpoint, arkoor and fanout txs). The stored TapTweak of
    the spent output's taproot stands in for its script tree, so the output key is MuSig(cosigners,
    server) tweaked by it."""

    client_cosigners: tuple[bytes, ...]
    tap_tweak: bytes
    signature: bytes | None

    @property
    def type(self) -> TransitionType:
        return TransitionType.ARKOOR

    def encode_fields(self) -> bytes:
        return ser_vector(self.client_cosigners) + self.tap_tweak + ser_opt_signature(self.signature)

    @classmethod
    def decode_fields(cls, r: ByteReader) -> Self:
        cosigners = _read_keys(r, "arkoor client cosigners")
        tap_tweak = r.scalar("arkoor tap_tweak")
        return cls(cosigners, tap_tweak, r.opt_signature("arkoor signature"))

    def output_key(self, server_pubkey: bytes) -> bytes:
        internal = xonly(key_agg([*self.client_cosigners, server_pubkey]))
        return tweak_xonly(internal, self.tap_tweak)[0]

    def input_script_pubkey(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> bytes:
        return p2tr_script(self.output_key(server_pubkey))


@dataclass(frozen=True)
class HashLockedCosignedTransition(Transition):
    """Spends an hArk leaf output through its unlock leaf: MuSig(user, server) signature plus the unlock
    preimage, which the server releases only once the user has forfeited what paid for this VTXO. Until
    then only the unlock hash is known and the leaf tx cannot be broadcast."""

    user_pubkey: bytes
    signature: bytes | None
    unlock_hash: bytes
    preimage: bytes | None
    version: HashLockVersion

    def __post_init__(self) -> None:
        if self.preimage is not None and sha256(self.preimage) != self.unlock_hash:
            raise ValueError("unlock preimage does not hash to the unlock hash")

    @property
    def type(self) -> TransitionType:
        if self.version is HashLockVersion.V1:
            return TransitionType.HASH_LOCKED_COSIGNED
        return TransitionType.HASH_LOCKED_COSIGNED_V0

    @property
    def is_complete(self) -> bool:
        return self.signature is not None and self.preimage is not None

    def encode_fields(self) -> bytes:
        if self.preimage is not None:
            unlock = ser_u8(UnlockFlag.PREIMAGE) + self.preimage
        else:
            unlock = ser_u8(UnlockFlag.UNLOCK_HASH) + self.unlock_hash
        return self.user_pubkey + ser_opt_signature(self.signature) + unlock

    @classmethod
    def decode_fields(cls, r: ByteReader, version: HashLockVersion) -> Self:
        user = r.pubkey("hash-locked user key")
        signature = r.opt_signature("hash-locked signature")
        start = r.offset
        flag = r.u8("hash-locked unlock flag")
        data = r.hash32("hash-locked unlock data")
        if flag == UnlockFlag.PREIMAGE:
            return cls(user, signature, sha256(data), data, version)
        if flag == UnlockFlag.UNLOCK_HASH:
            return cls(user, signature, data, None, version)
        raise UnknownType(start, f"unknown hash-lock unlock flag {flag}")

    def leaf_policy(self) -> HarkLeafPolicy:
        return HarkLeafPolicy(self.user_pubkey, self.unlock_hash, self.version)

    def input_script_pubkey(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> bytes:
        return self.leaf_policy().script_pubkey(server_pubkey, exit_delta, expiry_height)

    def witness(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> list[bytes]:
        if self.signature is None or self.preimage is None:
            return []
        policy = self.leaf_policy()
        leaf = policy.unlock_leaf(server_pubkey)
        control_block = policy.taproot(server_pubkey, exit_delta, expiry_height).control_block(leaf)
        return [self.signature, self.preimage, leaf, control_block]

    def sighash_and_key(
        self,
        tx: CTransaction,
        prevout: Prevout,
        server_pubkey: bytes,
        exit_delta: int,
        expiry_height: int,
    ) -> tuple[bytes, bytes]:
        """A script-path spend of the unlock leaf, whose key is the untweaked MuSig(user, server)."""
        leaf = self.leaf_policy().unlock_leaf(server_pubkey)
        msg = taproot_sighash(tx, 0, [prevout], leaf_script=leaf)
        return msg, user_server_key(self.user_pubkey, server_pubkey)


def decode_transition(r: ByteReader) -> Transition:
    start = r.offset
    type_byte = r.u8("transition type")
    match type_byte:
        case TransitionType.COSIGNED:
            return CosignedTransition.decode_fields(r)
        case TransitionType.ARKOOR:
            return ArkoorTransition.decode_fields(r)
        case TransitionType.HASH_LOCKED_COSIGNED_V0:
            return HashLockedCosignedTransition.decode_fields(r, HashLockVersion.V0)
        case TransitionType.HASH_LOCKED_COSIGNED:
            return HashLockedCosignedTransition.decode_fields(r, HashLockVersion.V1)
    raise UnknownType(start, f"unknown transition type {type_byte:#04x}")
