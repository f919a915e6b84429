"""Hash functions of the Bitcoin protocol.

RIPEMD-160 comes from OpenSSL through hashlib where it is there. OpenSSL 3 moved it to the "legacy"
provider, which some distributions do not load; python-bitcoinlib's pure-Python RIPEMD-160 stands in
then. It is about 100 times slower, which matters only where many BIP32 keys are derived (each child
hashes its parent's key for the fingerprint).
"""

import functools
import hashlib

from bitcoin.core.contrib.ripemd160 import ripemd160 as python_ripemd160


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash256(data: bytes) -> bytes:
    """Double SHA256, as used for txids and Base58Check checksums."""
    return sha256(sha256(data))


@functools.cache
def _tag_prefix(tag: str) -> bytes:
    tag_hash = sha256(tag.encode())
    return tag_hash + tag_hash


def tagged_hash(tag: str, msg: bytes) -> bytes:
    """BIP340 tagged hash: sha256(sha256(tag) || sha256(tag) || msg).

    The tag keeps hashes of one protocol context from ever colliding with another's.
    """
    return sha256(_tag_prefix(tag) + msg)


def ripemd160(data: bytes) -> bytes:
    try:
        h = hashlib.new("ripemd160", data)
    except ValueError:  # this OpenSSL build does not provide it
        return bytes(python_ripemd160(data))
    return h.digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD160(SHA256(data)): P2PKH/P2SH hashes, BIP32 fingerprints, OP_HASH160."""
    return ripemd160(sha256(data))
