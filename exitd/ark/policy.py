"""VTXO output policies: their encoding, their tapscript leaves and taproot, and the user's claim clause.

A policy says who may spend an output of an exit chain and when. Only the VTXO's final output carries a
user-facing policy; intermediate outputs (checkpoints, hArk leaves) carry server-only ones, which we still
need in order to recompute the scripts that the next exit transaction spends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import ClassVar, Self

from exitd.ark.encoding import (
    ByteReader,
    DisallowedPolicy,
    UnknownType,
    ser_u8,
    ser_u16,
    ser_u32,
)
from exitd.ark.hashes import ripemd160
from exitd.ark.key import xonly
from exitd.ark.musig import key_agg
from exitd.ark.script import (
    OP_CHECKLOCKTIMEVERIFY,
    OP_CHECKSEQUENCEVERIFY,
    OP_CHECKSIG,
    OP_DROP,
    OP_EQUALVERIFY,
    OP_HASH160,
    OP_SIZE,
    push_data,
    push_int,
)
from exitd.ark.taproot import TaprootInfo, taproot_from_leaves

# The only preimage size that v1 hash locks accept (a 32-byte Lightning or hArk preimage).
PREIMAGE_LEN = 32


class HashLockVersion(Enum):
    """v0 hash locks only check HASH160 of the witness item; v1 also pins its size to 32 bytes, so that
    the same lock cannot be satisfied by a differently sized preimage on a chain with other rules."""

    V0 = 0
    V1 = 1


# -- tapscript leaves, named as in bark ------------------------------------------------------------


def _checksig(key: bytes) -> bytes:
    return push_data(key) + bytes([OP_CHECKSIG])


def _csv(delay_blocks: int) -> bytes:
    return push_int(delay_blocks) + bytes([OP_CHECKSEQUENCEVERIFY, OP_DROP])


def _cltv(height: int) -> bytes:
    return push_int(height) + bytes([OP_CHECKLOCKTIMEVERIFY, OP_DROP])


def _hash_lock(sha256_hash: bytes, version: HashLockVersion) -> bytes:
    """OP_HASH160 of the preimage is RIPEMD160(SHA256(preimage)), so the script commits to RIPEMD160(H)."""
    size_check = b""
    if version is HashLockVersion.V1:
        size_check = bytes([OP_SIZE]) + push_int(PREIMAGE_LEN) + bytes([OP_EQUALVERIFY])
    return size_check + bytes([OP_HASH160]) + push_data(ripemd160(sha256_hash)) + bytes([OP_EQUALVERIFY])


def delayed_sign(delay_blocks: int, key: bytes) -> bytes:
    return _csv(delay_blocks) + _checksig(key)


def timelock_sign(height: int, key: bytes) -> bytes:
    return _cltv(height) + _checksig(key)


def delay_timelock_sign(delay_blocks: int, height: int, key: bytes) -> bytes:
    return _cltv(height) + _csv(delay_blocks) + _checksig(key)


def hash_and_sign(sha256_hash: bytes, key: bytes) -> bytes:
    return _hash_lock(sha256_hash, HashLockVersion.V1) + _checksig(key)


def hash_and_sign_v0(sha256_hash: bytes, key: bytes) -> bytes:
    return _hash_lock(sha256_hash, HashLockVersion.V0) + _checksig(key)


def hash_delay_sign(sha256_hash: bytes, delay_blocks: int, key: bytes) -> bytes:
    return _csv(delay_blocks) + _hash_lock(sha256_hash, HashLockVersion.V1) + _checksig(key)


def hash_delay_sign_v0(sha256_hash: bytes, delay_blocks: int, key: bytes) -> bytes:
    return _csv(delay_blocks) + _hash_lock(sha256_hash, HashLockVersion.V0) + _checksig(key)


def hash_and_sign_versioned(version: HashLockVersion, sha256_hash: bytes, key: bytes) -> bytes:
    return (hash_and_sign if version is HashLockVersion.V1 else hash_and_sign_v0)(sha256_hash, key)


def hash_delay_sign_versioned(
    version: HashLockVersion, sha256_hash: bytes, delay_blocks: int, key: bytes
) -> bytes:
    leaf = hash_delay_sign if version is HashLockVersion.V1 else hash_delay_sign_v0
    return leaf(sha256_hash, delay_blocks, key)


def user_server_key(user_pubkey: bytes, server_pubkey: bytes) -> bytes:
    """A = x(KeyAgg(user, server)): the cooperative key path of every two-party policy."""
    return xonly(key_agg([user_pubkey, server_pubkey]))


# -- policy types ----------------------------------------------------------------------------------


class PolicyType(IntEnum):
    """The policy's type byte on the wire."""

    PUBKEY = 0x00
    SERVER_HTLC_SEND_V0 = 0x01
    SERVER_HTLC_RECV_V0 = 0x02
    CHECKPOINT = 0x03
    EXPIRY = 0x04
    HARK_LEAF_V0 = 0x05
    HARK_FORFEIT_V0 = 0x06
    SERVER_OWNED = 0x07
    SERVER_HTLC_RECV = 0x08
    SERVER_HTLC_SEND = 0x09
    HARK_LEAF = 0x0A
    HARK_FORFEIT = 0x0B

    @property
    def kind(self) -> str:
        return _POLICY_KINDS[self]


_POLICY_KINDS = {
    PolicyType.PUBKEY: "pubkey",
    PolicyType.SERVER_HTLC_SEND_V0: "server-htlc-send",
    PolicyType.SERVER_HTLC_RECV_V0: "server-htlc-receive",
    PolicyType.CHECKPOINT: "checkpoint",
    PolicyType.EXPIRY: "expiry",
    PolicyType.HARK_LEAF_V0: "hark-leaf",
    PolicyType.HARK_FORFEIT_V0: "hark-forfeit",
    PolicyType.SERVER_OWNED: "server-owned",
    PolicyType.SERVER_HTLC_RECV: "server-htlc-receive-v1",
    PolicyType.SERVER_HTLC_SEND: "server-htlc-send-v1",
    PolicyType.HARK_LEAF: "hark-leaf-v1",
    PolicyType.HARK_FORFEIT: "hark-forfeit-v1",
}


@dataclass(frozen=True)
class RivalClause:
    """Another party's leaf on the same output, which the user's claim races: the server's refund of an
    HTLC receive, valid from `cltv_height` and `csv_blocks` after the output confirmed."""

    csv_blocks: int
    cltv_height: int

    def opens_at(self, output_height: int) -> int:
        """The first block height that may hold the rival's spend of an output confirmed at
        `output_height` (a CLTV of h lets a tx into block h + 1; a CSV of n, into block output + n)."""
        return max(self.cltv_height + 1, output_height + self.csv_blocks)


@dataclass(frozen=True)
class ClaimClause:
    """How the user alone spends a VTXO's final output after the exit: everything a claim input needs
    besides the signature (and, for an HTLC receive, the preimage); `rival`, the leaf the claim must
    confirm before (None: nobody else can spend the output once the user can)."""

    user_pubkey: bytes
    script_pubkey: bytes
    leaf_script: bytes
    control_block: bytes
    csv_blocks: int
    cltv_height: int | None
    payment_hash: bytes | None
    rival: RivalClause | None = None

    @property
    def needs_preimage(self) -> bool:
        return self.payment_hash is not None


class Policy(ABC):
    """An output policy. Subclasses are frozen dataclasses; `taproot` needs the VTXO's server key,
    exit delta and expiry height because most leaves are built from them."""

    is_user_policy: ClassVar[bool] = False

    @property
    @abstractmethod
    def type(self) -> PolicyType: ...

    @abstractmethod
    def encode_fields(self) -> bytes: ...

    @abstractmethod
    def taproot(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> TaprootInfo: ...

    @property
    def kind(self) -> str:
        return self.type.kind

    def encode(self) -> bytes:
        return ser_u8(self.type) + self.encode_fields()

    def script_pubkey(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> bytes:
        return self.taproot(server_pubkey, exit_delta, expiry_height).script_pubkey


class UserPolicy(Policy):
    """A policy the user can claim on their own once the exit chain has confirmed."""

    is_user_policy = True
    user_pubkey: bytes

    @abstractmethod
    def user_claim_leaf(self, server_pubkey: bytes, exit_delta: int) -> tuple[bytes, int, int | None]:
        """The user's leaf script, its CSV blocks and its CLTV height (None if it has no CLTV)."""

    @property
    def claim_payment_hash(self) -> bytes | None:
        """The hash whose preimage the user's leaf wants, if any."""
        return None

    def rival_clause(self, exit_delta: int) -> RivalClause | None:
        """The leaf of another party that can take the output away from a user who claims too late."""
        return None

    def user_claim_clause(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> ClaimClause:
        info = self.taproot(server_pubkey, exit_delta, expiry_height)
        leaf, csv_blocks, cltv_height = self.user_claim_leaf(server_pubkey, exit_delta)
        return ClaimClause(
            user_pubkey=self.user_pubkey,
            script_pubkey=info.script_pubkey,
            leaf_script=leaf,
            control_block=info.control_block(leaf),
            csv_blocks=csv_blocks,
            cltv_height=cltv_height,
            payment_hash=self.claim_payment_hash,
            rival=self.rival_clause(exit_delta),
        )


@dataclass(frozen=True)
class PubkeyPolicy(UserPolicy):
    """A plain VTXO: cooperative key path, or the user alone after exit_delta."""

    user_pubkey: bytes

    @property
    def type(self) -> PolicyType:
        return PolicyType.PUBKEY

    def encode_fields(self) -> bytes:
        return self.user_pubkey

    @classmethod
    def decode_fields(cls, r: ByteReader) -> Self:
        return cls(r.pubkey("pubkey policy user key"))

    def user_claim_leaf(self, server_pubkey: bytes, exit_delta: int) -> tuple[bytes, int, int | None]:
        return delayed_sign(exit_delta, xonly(self.user_pubkey)), exit_delta, None

    def taproot(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> TaprootInfo:
        leaf, _, _ = self.user_claim_leaf(server_pubkey, exit_delta)
        return taproot_from_leaves(user_server_key(self.user_pubkey, server_pubkey), [leaf])


@dataclass(frozen=True)
class ServerHtlcSendPolicy(UserPolicy):
    """The user pays through the server: the server takes it with the preimage, or the user gets it back
    after htlc_expiry (and twice the exit delta, so the server always has its window first)."""

    user_pubkey: bytes
    payment_hash: bytes
    htlc_expiry: int
    version: HashLockVersion = HashLockVersion.V1

    @property
    def type(self) -> PolicyType:
        v1 = self.version is HashLockVersion.V1
        return PolicyType.SERVER_HTLC_SEND if v1 else PolicyType.SERVER_HTLC_SEND_V0

    def encode_fields(self) -> bytes:
        return self.user_pubkey + self.payment_hash + ser_u32(self.htlc_expiry)

    @classmethod
    def decode_fields(cls, r: ByteReader, version: HashLockVersion) -> Self:
        user = r.pubkey("htlc-send user key")
        payment_hash = r.hash32("htlc-send payment hash")
        return cls(user, payment_hash, r.block_height("htlc-send htlc_expiry"), version)

    def user_claim_leaf(self, server_pubkey: bytes, exit_delta: int) -> tuple[bytes, int, int | None]:
        delay = 2 * exit_delta
        return delay_timelock_sign(delay, self.htlc_expiry, xonly(self.user_pubkey)), delay, self.htlc_expiry

    def taproot(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> TaprootInfo:
        server_leaf = hash_delay_sign_versioned(
            self.version, self.payment_hash, exit_delta, xonly(server_pubkey)
        )
        user_leaf, _, _ = self.user_claim_leaf(server_pubkey, exit_delta)
        return taproot_from_leaves(user_server_key(self.user_pubkey, server_pubkey), [server_leaf, user_leaf])


@dataclass(frozen=True)
class ServerHtlcRecvPolicy(UserPolicy):
    """The user is paid through the server: the user takes it with the preimage, or the server gets it
    back after htlc_expiry."""

    user_pubkey: bytes
    payment_hash: bytes
    htlc_expiry: int
    htlc_expiry_delta: int
    version: HashLockVersion = HashLockVersion.V1

    @property
    def type(self) -> PolicyType:
        v1 = self.version is HashLockVersion.V1
        return PolicyType.SERVER_HTLC_RECV if v1 else PolicyType.SERVER_HTLC_RECV_V0

    def encode_fields(self) -> bytes:
        return (
            self.user_pubkey + self.payment_hash + ser_u32(self.htlc_expiry) + ser_u16(self.htlc_expiry_delta)
        )

    @classmethod
    def decode_fields(cls, r: ByteReader, version: HashLockVersion) -> Self:
        user = r.pubkey("htlc-receive user key")
        payment_hash = r.hash32("htlc-receive payment hash")
        htlc_expiry = r.block_height("htlc-receive htlc_expiry")
        return cls(user, payment_hash, htlc_expiry, r.block_delta("htlc-receive htlc_expiry_delta"), version)

    @property
    def claim_payment_hash(self) -> bytes | None:
        return self.payment_hash

    def user_claim_leaf(self, server_pubkey: bytes, exit_delta: int) -> tuple[bytes, int, int | None]:
        delay = self.htlc_expiry_delta + exit_delta
        leaf = hash_delay_sign_versioned(self.version, self.payment_hash, delay, xonly(self.user_pubkey))
        return leaf, delay, None

    def rival_clause(self, exit_delta: int) -> RivalClause | None:
        """The server's refund leaf (taproot's first): once the HTLC has expired, the server takes the
        output back, so the user's claim must confirm before it."""
        return RivalClause(exit_delta, self.htlc_expiry)

    def refund_leaf(self, server_pubkey: bytes, exit_delta: int) -> bytes:
        """The server's refund leaf: its key alone, after htlc_expiry (CLTV) and exit_delta (CSV)."""
        return delay_timelock_sign(exit_delta, self.htlc_expiry, xonly(server_pubkey))

    def refund_clause(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> ClaimClause:
        """The server's refund of the output, in a clause's shape (the server's key where a claim has the
        user's): what whoever plays the server signs to take an unclaimed HTLC back."""
        leaf = self.refund_leaf(server_pubkey, exit_delta)
        info = self.taproot(server_pubkey, exit_delta, expiry_height)
        return ClaimClause(
            user_pubkey=server_pubkey,
            script_pubkey=info.script_pubkey,
            leaf_script=leaf,
            control_block=info.control_block(leaf),
            csv_blocks=exit_delta,
            cltv_height=self.htlc_expiry,
            payment_hash=None,
        )

    def taproot(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> TaprootInfo:
        server_leaf = self.refund_leaf(server_pubkey, exit_delta)
        user_leaf, _, _ = self.user_claim_leaf(server_pubkey, exit_delta)
        return taproot_from_leaves(user_server_key(self.user_pubkey, server_pubkey), [server_leaf, user_leaf])


@dataclass(frozen=True)
class CheckpointPolicy(Policy):
    """Output of an arkoor checkpoint tx: cooperative key path, or the server sweeps after expiry."""

    user_pubkey: bytes

    @property
    def type(self) -> PolicyType:
        return PolicyType.CHECKPOINT

    def encode_fields(self) -> bytes:
        return self.user_pubkey

    @classmethod
    def decode_fields(cls, r: ByteReader) -> Self:
        return cls(r.pubkey("checkpoint policy user key"))

    def taproot(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> TaprootInfo:
        leaf = timelock_sign(expiry_height, xonly(server_pubkey))
        return taproot_from_leaves(user_server_key(self.user_pubkey, server_pubkey), [leaf])


@dataclass(frozen=True)
class ExpiryPolicy(Policy):
    """An output with an arbitrary internal key that the server sweeps after expiry."""

    internal_key: bytes

    @property
    def type(self) -> PolicyType:
        return PolicyType.EXPIRY

    def encode_fields(self) -> bytes:
        return self.internal_key

    @classmethod
    def decode_fields(cls, r: ByteReader) -> Self:
        return cls(r.xonly("expiry policy internal key"))

    def taproot(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> TaprootInfo:
        return taproot_from_leaves(self.internal_key, [timelock_sign(expiry_height, xonly(server_pubkey))])


@dataclass(frozen=True)
class HarkLeafPolicy(Policy):
    """The output an hArk leaf tx spends: the server sweeps after expiry, or user and server together
    reveal the unlock preimage (the server hands it out when the user forfeits the previous VTXO)."""

    user_pubkey: bytes
    unlock_hash: bytes
    version: HashLockVersion = HashLockVersion.V1

    @property
    def type(self) -> PolicyType:
        return PolicyType.HARK_LEAF if self.version is HashLockVersion.V1 else PolicyType.HARK_LEAF_V0

    def encode_fields(self) -> bytes:
        return self.user_pubkey + self.unlock_hash

    @classmethod
    def decode_fields(cls, r: ByteReader, version: HashLockVersion) -> Self:
        return cls(r.pubkey("hark-leaf user key"), r.hash32("hark-leaf unlock hash"), version)

    def unlock_leaf(self, server_pubkey: bytes) -> bytes:
        """The leaf the hArk leaf tx is signed on, with MuSig(user, server) as its key."""
        agg = user_server_key(self.user_pubkey, server_pubkey)
        return hash_and_sign_versioned(self.version, self.unlock_hash, agg)

    def taproot(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> TaprootInfo:
        expiry_leaf = timelock_sign(expiry_height, xonly(server_pubkey))
        return taproot_from_leaves(
            user_server_key(self.user_pubkey, server_pubkey),
            [expiry_leaf, self.unlock_leaf(server_pubkey)],
        )


@dataclass(frozen=True)
class HarkForfeitPolicy(Policy):
    """A forfeited hArk VTXO: the server takes it with the unlock preimage, or the user after exit_delta."""

    user_pubkey: bytes
    unlock_hash: bytes
    version: HashLockVersion = HashLockVersion.V1

    @property
    def type(self) -> PolicyType:
        return PolicyType.HARK_FORFEIT if self.version is HashLockVersion.V1 else PolicyType.HARK_FORFEIT_V0

    def encode_fields(self) -> bytes:
        return self.user_pubkey + self.unlock_hash

    @classmethod
    def decode_fields(cls, r: ByteReader, version: HashLockVersion) -> Self:
        return cls(r.pubkey("hark-forfeit user key"), r.hash32("hark-forfeit unlock hash"), version)

    def taproot(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> TaprootInfo:
        server_leaf = hash_and_sign_versioned(self.version, self.unlock_hash, xonly(server_pubkey))
        user_leaf = delayed_sign(exit_delta, xonly(self.user_pubkey))
        return taproot_from_leaves(user_server_key(self.user_pubkey, server_pubkey), [server_leaf, user_leaf])


@dataclass(frozen=True)
class ServerOwnedPolicy(Policy):
    """Plain server money: key path of the server key, no script tree."""

    @property
    def type(self) -> PolicyType:
        return PolicyType.SERVER_OWNED

    def encode_fields(self) -> bytes:
        return b""

    def taproot(self, server_pubkey: bytes, exit_delta: int, expiry_height: int) -> TaprootInfo:
        return taproot_from_leaves(xonly(server_pubkey), [])


_V0_POLICY_TYPES = frozenset(
    {
        PolicyType.SERVER_HTLC_SEND_V0,
        PolicyType.SERVER_HTLC_RECV_V0,
        PolicyType.HARK_LEAF_V0,
        PolicyType.HARK_FORFEIT_V0,
    }
)


def decode_policy(r: ByteReader, *, allow_server_policy: bool = False) -> Policy:
    """Read a type byte and that policy's fields. User VTXOs may only end in a user policy; the server's
    own database also holds VTXOs ending in server-only ones, hence the flag."""
    start = r.offset
    type_byte = r.u8("policy type")
    try:
        policy_type = PolicyType(type_byte)
    except ValueError:
        raise UnknownType(start, f"unknown policy type {type_byte:#04x}") from None
    version = HashLockVersion.V0 if policy_type in _V0_POLICY_TYPES else HashLockVersion.V1
    policy: Policy
    match policy_type:
        case PolicyType.PUBKEY:
            policy = PubkeyPolicy.decode_fields(r)
        case PolicyType.SERVER_HTLC_SEND_V0 | PolicyType.SERVER_HTLC_SEND:
            policy = ServerHtlcSendPolicy.decode_fields(r, version)
        case PolicyType.SERVER_HTLC_RECV_V0 | PolicyType.SERVER_HTLC_RECV:
            policy = ServerHtlcRecvPolicy.decode_fields(r, version)
        case PolicyType.CHECKPOINT:
            policy = CheckpointPolicy.decode_fields(r)
        case PolicyType.EXPIRY:
            policy = ExpiryPolicy.decode_fields(r)
        case PolicyType.HARK_LEAF_V0 | PolicyType.HARK_LEAF:
            policy = HarkLeafPolicy.decode_fields(r, version)
        case PolicyType.HARK_FORFEIT_V0 | PolicyType.HARK_FORFEIT:
            policy = HarkForfeitPolicy.decode_fields(r, version)
        case PolicyType.SERVER_OWNED:
            policy = ServerOwnedPolicy()
    if not (policy.is_user_policy or allow_server_policy):
        raise DisallowedPolicy(start, f"server-only policy '{policy.kind}' where a user VTXO was expected")
    return policy
