"""Keys derived from the wallet mnemonic, on bark's paths, so a bark user's mnemonic finds their coins.

bark derives its VTXO keys at m/350'/0'/i (hardened 350 and 0, then normal i) from the BIP39 seed with an
empty passphrase. A VTXO only names its user pubkey, so finding the index is a bounded search.

bark's on-chain wallet is BIP86 (BDK's template): single-key taproot outputs at m/86'/coin'/0'/0/i for
receiving and m/86'/coin'/0'/1/i for change, coin 0 on mainnet and 1 elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self

from exitd.ark.bip32 import HARDENED, TPUB_VERSION, XPUB_VERSION, ExtendedKey, parse_path
from exitd.ark.bip39 import mnemonic_to_seed
from exitd.ark.key import tweak_seckey_for_taproot, xonly
from exitd.ark.script import p2tr_script
from exitd.ark.taproot import taproot_from_tree

VTXO_KEY_PATH = "m/350'/0'"
# bark hands out VTXO keys in order; a gap this large between used keys does not happen in practice.
DEFAULT_VTXO_KEY_SEARCH_LIMIT = 1000


@dataclass
class VtxoKeychain:
    """bark's VTXO keys; remembers the pubkeys it has derived so repeated searches are free."""

    parent: ExtendedKey
    _index_of: dict[bytes, int] = field(default_factory=dict)
    _derived: int = 0

    @classmethod
    def from_mnemonic(cls, mnemonic: str) -> VtxoKeychain:
        return cls(ExtendedKey.from_seed(mnemonic_to_seed(mnemonic)).derive(VTXO_KEY_PATH))

    def pubkey(self, index: int) -> bytes:
        return self.parent.derive([index]).pubkey

    def seckey(self, index: int) -> bytes:
        return self.parent.derive([index]).key

    def find_index(self, pubkey: bytes, limit: int = DEFAULT_VTXO_KEY_SEARCH_LIMIT) -> int | None:
        """The index i with m/350'/0'/i == pubkey, searching indices below `limit`."""
        while pubkey not in self._index_of and self._derived < limit:
            self._index_of[self.pubkey(self._derived)] = self._derived
            self._derived += 1
        return self._index_of.get(pubkey)


BIP86_PURPOSE = 86
# A key origin in a descriptor: [fingerprint/path], e.g. [73c5da0a/86h/1h/0h/0/5].
_KEY_ORIGIN = re.compile(r"\[(?P<fingerprint>[0-9a-fA-F]{8})(?P<path>(?:/[0-9]+['hH]?)*)\]")


class Keychain(IntEnum):
    """The BIP44 change level: receive addresses, or change (bitcoind's "internal" descriptor)."""

    EXTERNAL = 0
    INTERNAL = 1


def coin_type(network: str) -> int:
    """SLIP44 coin type of BIP44/86 paths: 0 for bitcoin, 1 for every test network."""
    return 0 if network == "mainnet" else 1


def bip86_account_path(network: str) -> list[int]:
    """m/86'/coin'/0'."""
    return [BIP86_PURPOSE | HARDENED, coin_type(network) | HARDENED, 0 | HARDENED]


@dataclass(frozen=True)
class Bip86Account:
    """The BIP86 account m/86'/coin'/0' of a mnemonic: its descriptors, output scripts and signing keys."""

    master_fingerprint: bytes
    account: ExtendedKey = field(repr=False)
    network: str
    _keychains: dict[Keychain, ExtendedKey] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_mnemonic(cls, mnemonic: str, network: str) -> Self:
        master = ExtendedKey.from_seed(mnemonic_to_seed(mnemonic))
        return cls(master.fingerprint, master.derive(bip86_account_path(network)), network)

    def descriptor(self, keychain: Keychain) -> str:
        """The public output descriptor of one keychain, without checksum, e.g.
        tr([73c5da0a/86h/1h/0h]tpub.../0/*)."""
        version = XPUB_VERSION if self.network == "mainnet" else TPUB_VERSION
        origin = f"{self.master_fingerprint.hex()}/{BIP86_PURPOSE}h/{coin_type(self.network)}h/0h"
        return f"tr([{origin}]{self.account.neuter().to_base58(version)}/{keychain.value}/*)"

    def script_pubkey(self, keychain: Keychain, index: int) -> bytes:
        """BIP86: the internal key's taproot output with no script tree."""
        internal = xonly(self._keychain(keychain).child(index).pubkey)
        return p2tr_script(taproot_from_tree(internal, None).output_key)

    def signing_key(self, keychain: Keychain, index: int) -> bytes:
        """The tweaked secret key that signs a key-path spend of script_pubkey(keychain, index)."""
        return tweak_seckey_for_taproot(self._keychain(keychain).child(index).key, None)

    def _keychain(self, keychain: Keychain) -> ExtendedKey:
        """m/86'/coin'/0'/keychain, derived once: a block that needs eighty children signs eighty coins."""
        node = self._keychains.get(keychain)
        if node is None:
            node = self._keychains[keychain] = self.account.child(keychain.value)
        return node

    def locate(self, descriptor: str) -> tuple[Keychain, int] | None:
        """The (keychain, index) a single-key descriptor such as bitcoind's `desc` of a coin names through its
        key origin, if that origin is in this account; None for any other key."""
        match = _KEY_ORIGIN.search(descriptor)
        if match is None or bytes.fromhex(match["fingerprint"]) != self.master_fingerprint:
            return None
        _, path = parse_path("m" + match["path"])
        if len(path) != 5 or path[:3] != bip86_account_path(self.network):
            return None
        keychain, index = path[3:]
        if keychain not in (Keychain.EXTERNAL, Keychain.INTERNAL) or index >= HARDENED:
            return None
        return Keychain(keychain), index
