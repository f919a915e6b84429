"""Keys derived from the wallet mnemonic, on bark's paths, so a bark user's mnemonic finds their coins.

bark derives its VTXO keys at m/350'/0'/i (hardened 350 and 0, then normal i) from the BIP39 seed with an
empty passphrase. A VTXO only names its user pubkey, so finding the index is a bounded search.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exitd.ark.bip32 import ExtendedKey
from exitd.ark.bip39 import mnemonic_to_seed

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
