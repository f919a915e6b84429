"""The wallet's BIP39 mnemonic, in its own file: mode 0600, never overwritten, absent until a wallet is made.

exitd may run before it has a wallet (barkd clients create one over REST), so whatever needs keys reads the
file through WalletSeed and gets NoWallet until it exists. The words are bark's own format: one line, so a
bark user can bring bark's mnemonic file as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from exitd.ark.bip32 import ExtendedKey
from exitd.ark.bip39 import generate_mnemonic, mnemonic_to_seed, validate_mnemonic
from exitd.wallet.errors import NoWallet, WalletExists


def write_private_file(path: Path, text: str) -> None:
    """Create `path` with mode 0600 and O_EXCL in one step: never briefly world-readable, never replaced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def normalized_mnemonic(words: str) -> str:
    """The words validated (InvalidMnemonic, never echoing them) and joined by single spaces."""
    validate_mnemonic(words)
    return " ".join(words.split())


def master_fingerprint(mnemonic: str) -> str:
    """What barkd reports as the wallet fingerprint: the BIP32 master key's, in hex."""
    return ExtendedKey.from_seed(mnemonic_to_seed(mnemonic)).fingerprint.hex()


class WalletSeed:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def mnemonic(self) -> str:
        try:
            words = self.path.read_text()
        except FileNotFoundError:
            raise NoWallet() from None
        return normalized_mnemonic(words)

    def create(self, mnemonic: str | None = None) -> str:
        """Write the given mnemonic, or a new 12-word one; returns the words. Refuses if one exists."""
        words = generate_mnemonic() if mnemonic is None else normalized_mnemonic(mnemonic)
        try:
            write_private_file(self.path, words + "\n")
        except FileExistsError:
            raise WalletExists(master_fingerprint(self.mnemonic)) from None
        return words
