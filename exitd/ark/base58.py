"""Base58Check: the encoding of BIP32 extended keys and of legacy (P2PKH, P2SH) addresses.

Base58 itself is python-bitcoinlib's; the check is a 4-byte hash256 of the payload appended to it, so
that a mistyped key or address is refused instead of read as another one.
"""

from bitcoin import base58

from exitd.ark.hashes import hash256

BASE58_ALPHABET = base58.B58_DIGITS


def b58check_encode(payload: bytes) -> str:
    return str(base58.encode(payload + hash256(payload)[:4]))


def b58check_decode(s: str) -> bytes:
    """The payload of a Base58Check string; ValueError for a bad character, length or checksum."""
    try:
        data = bytes(base58.decode(s))
    except base58.InvalidBase58Error:
        raise ValueError("invalid Base58 character") from None
    if len(data) < 4:
        raise ValueError("too short for Base58Check")
    payload, checksum = data[:-4], data[-4:]
    if hash256(payload)[:4] != checksum:
        raise ValueError("bad Base58Check checksum")
    return payload
