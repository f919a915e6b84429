"""BIP39 mnemonics: the English wordlist and checksum (PyPI `mnemonic`), and the seed.

A bark user brings the mnemonic of their bark wallet. Like bark's bip39 crate, words may be
separated by any whitespace; they are rejoined with single spaces before hashing, so the seed is
the one bark derived. Errors never repeat the words: they are the wallet's secret.
"""

import functools
import hashlib
import unicodedata

from mnemonic import Mnemonic

BIP39_WORD_COUNTS = (12, 15, 18, 21, 24)
BIP39_STRENGTHS = (128, 160, 192, 224, 256)
PBKDF2_ROUNDS = 2048


class InvalidMnemonic(ValueError):
    """The text is not a valid English BIP39 mnemonic. The message says why, without the words."""


@functools.cache
def _english() -> Mnemonic:
    return Mnemonic("english")


def _normalized_words(words: str) -> list[str]:
    return unicodedata.normalize("NFKD", words).split()


def generate_mnemonic(strength: int = 128) -> str:
    """A new mnemonic from `strength` bits of OS randomness (12 words for 128, 24 for 256)."""
    if strength not in BIP39_STRENGTHS:
        raise ValueError(f"BIP39 strength is one of {BIP39_STRENGTHS} bits, got {strength}")
    return str(_english().generate(strength))


def validate_mnemonic(words: str) -> None:
    """Raise InvalidMnemonic unless `words` is a valid English BIP39 mnemonic."""
    word_list = _normalized_words(words)
    if len(word_list) not in BIP39_WORD_COUNTS:
        raise InvalidMnemonic(
            f"a BIP39 mnemonic has 12, 15, 18, 21 or 24 words, this one has {len(word_list)}"
        )
    wordlist = _english().wordlist
    for position, word in enumerate(word_list, start=1):
        if word not in wordlist:
            hint = " (words are lowercase)" if word.lower() in wordlist else ""
            raise InvalidMnemonic(f"word {position} is not in the English BIP39 wordlist{hint}")
    if not _english().check(" ".join(word_list)):
        raise InvalidMnemonic(
            "the BIP39 checksum does not match: a word is probably mistyped, missing or out of order"
        )


def mnemonic_to_seed(words: str, passphrase: str = "") -> bytes:
    """The 64-byte BIP32 seed: PBKDF2-HMAC-SHA512(mnemonic, "mnemonic" + passphrase, 2048 rounds).

    BIP39 would hash any sentence; this validates it first, because a typo must not silently lead
    to an empty wallet. bark uses an empty passphrase.
    """
    validate_mnemonic(words)
    sentence = " ".join(_normalized_words(words))
    salt = "mnemonic" + unicodedata.normalize("NFKD", passphrase)
    return hashlib.pbkdf2_hmac("sha512", sentence.encode(), salt.encode(), PBKDF2_ROUNDS)
