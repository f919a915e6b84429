"""Hash functions of the Bitcoin protocol.

RIPEMD160 comes from OpenSSL through hashlib when it is there. OpenSSL 3 moved it to the "legacy"
provider, which some distributions do not load, so a pure-Python implementation of the RIPEMD-160
specification (Dobbertin, Bosselaers, Preneel, 1996) stands in. It only ever hashes 32-byte
digests here (OP_HASH160 leaves, key fingerprints), so its speed does not matter.
"""

import functools
import hashlib


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
        return ripemd160_fallback(data)
    return h.digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD160(SHA256(data)): P2PKH/P2SH hashes, BIP32 fingerprints, OP_HASH160."""
    return ripemd160(sha256(data))


# RIPEMD-160 constants: the two parallel lines ("left" and "right") each run five rounds of 16
# steps; per step they pick a message word (_R), a rotation (_S) and a round constant (_K).
# _R and _S are indexed [round][step within the round].
_R_LEFT = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    (7, 4, 13, 1, 10, 6, 15, 3, 12, 0, 9, 5, 2, 14, 11, 8),
    (3, 10, 14, 4, 9, 15, 8, 1, 2, 7, 0, 6, 13, 11, 5, 12),
    (1, 9, 11, 10, 0, 8, 12, 4, 13, 3, 7, 15, 14, 5, 6, 2),
    (4, 0, 5, 9, 7, 12, 2, 10, 14, 1, 3, 8, 11, 6, 15, 13),
)
_R_RIGHT = (
    (5, 14, 7, 0, 9, 2, 11, 4, 13, 6, 15, 8, 1, 10, 3, 12),
    (6, 11, 3, 7, 0, 13, 5, 10, 14, 15, 8, 12, 4, 9, 1, 2),
    (15, 5, 1, 3, 7, 14, 6, 9, 11, 8, 12, 2, 10, 0, 4, 13),
    (8, 6, 4, 1, 3, 11, 15, 0, 5, 12, 2, 13, 9, 7, 10, 14),
    (12, 15, 10, 4, 1, 5, 8, 7, 6, 2, 13, 14, 0, 3, 9, 11),
)
_S_LEFT = (
    (11, 14, 15, 12, 5, 8, 7, 9, 11, 13, 14, 15, 6, 7, 9, 8),
    (7, 6, 8, 13, 11, 9, 7, 15, 7, 12, 15, 9, 11, 7, 13, 12),
    (11, 13, 6, 7, 14, 9, 13, 15, 14, 8, 13, 6, 5, 12, 7, 5),
    (11, 12, 14, 15, 14, 15, 9, 8, 9, 14, 5, 6, 8, 6, 5, 12),
    (9, 15, 5, 11, 6, 8, 13, 12, 5, 12, 13, 14, 11, 8, 5, 6),
)
_S_RIGHT = (
    (8, 9, 9, 11, 13, 15, 15, 5, 7, 7, 8, 11, 14, 14, 12, 6),
    (9, 13, 15, 7, 12, 8, 9, 11, 7, 7, 12, 7, 6, 15, 13, 11),
    (9, 7, 15, 11, 8, 6, 6, 14, 12, 13, 5, 14, 13, 13, 7, 5),
    (15, 5, 8, 11, 14, 14, 6, 14, 6, 9, 12, 9, 12, 5, 15, 8),
    (8, 5, 12, 9, 12, 5, 14, 6, 8, 13, 6, 5, 15, 13, 11, 11),
)
_K_LEFT = (0x00000000, 0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xA953FD4E)
_K_RIGHT = (0x50A28BE6, 0x5C4DD124, 0x6D703EF3, 0x7A6D76E9, 0x00000000)
_RIPEMD160_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)
_MASK32 = 0xFFFFFFFF


def _rol32(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK32


def _ripemd160_f(round_: int, x: int, y: int, z: int) -> int:
    """The boolean function of a round; the right line uses them in reverse order."""
    if round_ == 0:
        return x ^ y ^ z
    if round_ == 1:
        return (x & y) | (~x & z)
    if round_ == 2:
        return (x | ~y) ^ z
    if round_ == 3:
        return (x & z) | (y & ~z)
    return x ^ (y | ~z)


def _ripemd160_compress(state: tuple[int, ...], block: bytes) -> tuple[int, ...]:
    words = [int.from_bytes(block[i : i + 4], "little") for i in range(0, 64, 4)]
    al, bl, cl, dl, el = state
    ar, br, cr, dr, er = state
    for j in range(80):
        round_, step = divmod(j, 16)
        t = al + _ripemd160_f(round_, bl, cl, dl) + words[_R_LEFT[round_][step]] + _K_LEFT[round_]
        t = (_rol32(t & _MASK32, _S_LEFT[round_][step]) + el) & _MASK32
        al, el, dl, cl, bl = el, dl, _rol32(cl, 10), bl, t
        t = ar + _ripemd160_f(4 - round_, br, cr, dr) + words[_R_RIGHT[round_][step]] + _K_RIGHT[round_]
        t = (_rol32(t & _MASK32, _S_RIGHT[round_][step]) + er) & _MASK32
        ar, er, dr, cr, br = er, dr, _rol32(cr, 10), br, t
    h0, h1, h2, h3, h4 = state
    return (
        (h1 + cl + dr) & _MASK32,
        (h2 + dl + er) & _MASK32,
        (h3 + el + ar) & _MASK32,
        (h4 + al + br) & _MASK32,
        (h0 + bl + cr) & _MASK32,
    )


def ripemd160_fallback(data: bytes) -> bytes:
    """RIPEMD-160 in pure Python, for when hashlib lacks it (see the module docstring)."""
    # MD4-style padding: 0x80, zeros to 56 mod 64, then the bit length as 64-bit little-endian.
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + (8 * len(data)).to_bytes(8, "little")
    state: tuple[int, ...] = _RIPEMD160_IV
    for i in range(0, len(padded), 64):
        state = _ripemd160_compress(state, padded[i : i + 64])
    return b"".join(h.to_bytes(4, "little") for h in state)
