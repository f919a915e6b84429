"""Base58 (python-bitcoinlib's, as exitd uses it) and exitd's Base58Check over it."""

import pytest
from bitcoin import base58

from exitd.ark.base58 import b58check_decode, b58check_encode

# Bitcoin Core's base58_encode_decode.json (a few of them).
BASE58_VECTORS = [
    ("", ""),
    ("61", "2g"),
    ("626262", "a3gV"),
    ("73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"),
    ("00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"),
    ("bf4f89001e670274dd", "3SEo3LWLoPntC"),
    ("00000000000000000000", "1111111111"),
]


@pytest.mark.parametrize(("hex_data", "encoded"), BASE58_VECTORS)
def test_base58_vectors(hex_data: str, encoded: str) -> None:
    assert base58.encode(bytes.fromhex(hex_data)) == encoded
    assert base58.decode(encoded).hex() == hex_data


def test_base58check() -> None:
    # The P2PKH address of hash160 0x7680ad..., by its Base58Check round trip.
    payload = bytes.fromhex("007680adec8eabcabac676be9e83854ade0bd22cdb")
    assert b58check_encode(payload) == "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"
    assert b58check_decode("1BoatSLRHtKNngkdXEeobR76b53LETtpyT") == payload
    with pytest.raises(ValueError, match="checksum"):
        b58check_decode("1BoatSLRHtKNngkdXEeobR76b53LETtpyU")
    with pytest.raises(ValueError, match="character"):
        b58check_decode("1BoatSLRHtKNngkdXEeobR76b53LETtpy0")
    with pytest.raises(ValueError, match="too short"):
        b58check_decode("1")
