import hashlib
import os

import pytest

from exitd.ark import hashes
from exitd.ark.hashes import hash160, hash256, python_ripemd160, ripemd160, sha256, tagged_hash

# The test vectors of the RIPEMD-160 specification (Dobbertin, Bosselaers, Preneel).
RIPEMD160_VECTORS = [
    (b"", "9c1185a5c5e9fc54612808977ee8f548b2258d31"),
    (b"a", "0bdc9d2d256b3ee9daae347be6f4dc835a467ffe"),
    (b"abc", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
    (b"message digest", "5d0689ef49d2fae572b881b123a85ffa21595f36"),
    (b"abcdefghijklmnopqrstuvwxyz", "f71c27109c692c1b56bbdceb5b9d2865b3708dbc"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "12a053384a9c0c88e405a06c27dcf49ada62eb2b"),
    (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "b0e20b6e3116640286ed3a87a5713079b21f5189",
    ),
    (b"1234567890" * 8, "9b752e45573d4b39f4dbd3323cab82bf63326bfb"),
]
RIPEMD160_MILLION_A = "52783243c1697bdbe16d37f97f68f08325dc1528"


def openssl_has_ripemd160() -> bool:
    try:
        hashlib.new("ripemd160")
    except ValueError:
        return False
    return True


def test_sha256_and_hash256() -> None:
    assert sha256(b"").hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert hash256(b"").hex() == "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"


def test_tagged_hash() -> None:
    # BIP341 wallet vector: the TapTweak of an internal key with no script tree.
    internal = bytes.fromhex("d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d")
    expected = "b86e7be8f39bab32a6f2c0443abbc210f0edac0e2c53d501b36b64437d9c6c70"
    assert tagged_hash("TapTweak", internal).hex() == expected
    tag_hash = sha256(b"TapTweak")
    assert tagged_hash("TapTweak", internal) == sha256(tag_hash + tag_hash + internal)


def test_hash160() -> None:
    # BIP173: the generator point's P2WPKH program.
    generator = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    assert hash160(generator).hex() == "751e76e8199196d454941c45d1b3a323f1433bd6"


@pytest.mark.parametrize(("msg", "digest"), RIPEMD160_VECTORS)
def test_ripemd160_vectors(msg: bytes, digest: str) -> None:
    assert ripemd160(msg).hex() == digest


def test_ripemd160_million_a() -> None:
    assert ripemd160(b"a" * 1_000_000).hex() == RIPEMD160_MILLION_A


@pytest.mark.skipif(not openssl_has_ripemd160(), reason="this OpenSSL build has no RIPEMD160")
def test_python_ripemd160_matches_openssl_at_every_padding_length() -> None:
    # Lengths 0..199 cross one-block, two-block and three-block paddings.
    for length in range(200):
        data = os.urandom(length)
        assert python_ripemd160(data) == hashlib.new("ripemd160", data).digest()


def test_ripemd160_falls_back_when_openssl_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_new = hashlib.new

    def new_without_ripemd160(name: str, data: bytes = b"") -> "hashlib._Hash":
        if name == "ripemd160":
            raise ValueError("unsupported hash type ripemd160")
        return real_new(name, data)

    monkeypatch.setattr(hashes.hashlib, "new", new_without_ripemd160)
    for msg, digest in RIPEMD160_VECTORS:
        assert ripemd160(msg).hex() == digest
