"""BIP32 hierarchical deterministic keys.

exitd derives from a bark user's BIP39 seed: the on-chain wallet at m/86'/coin'/0'/{0,1}/i (BIP86)
and the VTXO keys at m/350'/0'/i. Child keys come from HMAC-SHA512; the curve arithmetic is
libsecp256k1's (coincurve).
"""

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Self

from coincurve import PrivateKey, PublicKey

from exitd.ark.base58 import b58check_encode
from exitd.ark.hashes import hash160
from exitd.ark.key import is_valid_pubkey, pubkey_from_seckey

HARDENED = 0x80000000

# Serialization version bytes (BIP32; testnet ones also serve signet and regtest).
XPRV_VERSION = 0x0488ADE4
XPUB_VERSION = 0x0488B21E
TPRV_VERSION = 0x04358394
TPUB_VERSION = 0x043587CF
PRIVATE_VERSIONS = frozenset({XPRV_VERSION, TPRV_VERSION})
PUBLIC_VERSIONS = frozenset({XPUB_VERSION, TPUB_VERSION})


def parse_path(path: str) -> tuple[bool, list[int]]:
    """Split "m/86'/0'/0'/0/5" into (starts at the master key, [86|H, 0|H, 0|H, 0, 5]).

    ' and h (or H) mark hardened steps.
    """
    parts = path.strip().split("/")
    from_master = parts[0] == "m"
    if from_master:
        parts = parts[1:]
    indices = []
    for part in parts:
        match = re.fullmatch(r"(\d+)(['hH]?)", part)
        if not match:
            raise ValueError(f"invalid derivation path step {part!r} in {path!r}")
        index = int(match.group(1))
        if index >= HARDENED:
            raise ValueError(f"derivation index {index} is not below 2^31 in {path!r}")
        indices.append(index | HARDENED if match.group(2) else index)
    return from_master, indices


@dataclass(frozen=True)
class ExtendedKey:
    """A BIP32 extended key: a private one holds a 32-byte secret, a public one a 33-byte point.

    parent_fingerprint is the serialized "fingerprint" field (of the parent); the fingerprint
    property is this key's own, the one children and descriptors refer to. The key is kept out of
    repr() so that a secret never reaches a log by accident.
    """

    depth: int
    parent_fingerprint: bytes
    child_number: int
    chain_code: bytes
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.depth <= 255:
            raise ValueError("BIP32 depth must fit in one byte")
        if len(self.parent_fingerprint) != 4 or len(self.chain_code) != 32:
            raise ValueError("a parent fingerprint is 4 bytes and a chain code 32")
        if not 0 <= self.child_number <= 0xFFFFFFFF:
            raise ValueError("a BIP32 child number is 32 bits")
        if len(self.key) == 32:
            pubkey_from_seckey(self.key)  # raises unless 0 < k < n
        elif not is_valid_pubkey(self.key):
            raise ValueError("an extended key holds a 32-byte secret or a 33-byte compressed point")

    @classmethod
    def from_seed(cls, seed: bytes) -> Self:
        """The master key: HMAC-SHA512 keyed with "Bitcoin seed" over a 16..64-byte seed."""
        if not 16 <= len(seed) <= 64:
            raise ValueError(f"a BIP32 seed is 16 to 64 bytes, got {len(seed)}")
        i = hmac.digest(b"Bitcoin seed", seed, "sha512")
        # An out-of-range master secret (probability < 2^-127) fails validation in __post_init__.
        return cls(depth=0, parent_fingerprint=bytes(4), child_number=0, chain_code=i[32:], key=i[:32])

    @property
    def is_private(self) -> bool:
        return len(self.key) == 32

    @cached_property
    def pubkey(self) -> bytes:
        """Computed once: every non-hardened child and the fingerprint need it (an EC multiplication)."""
        return pubkey_from_seckey(self.key) if self.is_private else self.key

    @cached_property
    def fingerprint(self) -> bytes:
        return hash160(self.pubkey)[:4]

    def neuter(self) -> Self:
        """The public extended key: it derives the same public keys on non-hardened steps."""
        return type(self)(
            self.depth, self.parent_fingerprint, self.child_number, self.chain_code, self.pubkey
        )

    def child(self, index: int) -> Self:
        """CKDpriv or CKDpub. Hardened children commit to the secret key, so need a private key.

        BIP32 says to skip an index whose derivation is invalid (probability < 2^-127); this
        raises instead, which no wallet will ever see.
        """
        if not 0 <= index <= 0xFFFFFFFF:
            raise ValueError(f"child index {index} is not a 32-bit number")
        if self.depth == 255:
            raise ValueError("BIP32 depth cannot exceed 255")
        if index & HARDENED:
            if not self.is_private:
                raise ValueError("a public extended key cannot derive a hardened child")
            data = b"\x00" + self.key
        else:
            data = self.pubkey
        i = hmac.digest(self.chain_code, data + index.to_bytes(4, "big"), "sha512")
        tweak, chain_code = i[:32], i[32:]
        try:
            if self.is_private:
                key = bytes(PrivateKey(self.key).add(tweak).secret)
            else:
                key = bytes(PublicKey(self.key).add(tweak).format(compressed=True))
        except ValueError:
            raise ValueError(f"BIP32 child {index} is invalid; use another index") from None
        return type(self)(self.depth + 1, self.fingerprint, index, chain_code, key)

    def derive(self, path: str | Sequence[int]) -> Self:
        """Walk a path such as "m/86'/0'/0'/0/0" or [86 | HARDENED, 0 | HARDENED]."""
        if isinstance(path, str):
            from_master, indices = parse_path(path)
            if from_master and self.depth != 0:
                raise ValueError(f"{path!r} starts at the master key, but this key has depth {self.depth}")
        else:
            indices = list(path)
        key = self
        for index in indices:
            key = key.child(index)
        return key

    def to_base58(self, version: int) -> str:
        """The 78-byte BIP32 serialization in Base58Check (xprv/xpub/tprv/tpub by version).

        The version must match the key: exporting the xpub of a private key is .neuter().to_base58().
        """
        if version in PRIVATE_VERSIONS:
            if not self.is_private:
                raise ValueError("a public extended key has no private serialization")
            key_data = b"\x00" + self.key
        elif version in PUBLIC_VERSIONS:
            if self.is_private:
                raise ValueError("serialize a private key's public form with .neuter() first")
            key_data = self.key
        else:
            raise ValueError(f"unknown BIP32 version {version:#010x}")
        return b58check_encode(
            version.to_bytes(4, "big")
            + bytes([self.depth])
            + self.parent_fingerprint
            + self.child_number.to_bytes(4, "big")
            + self.chain_code
            + key_data
        )
