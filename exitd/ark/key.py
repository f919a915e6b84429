"""secp256k1 keys, BIP340 Schnorr signatures and BIP341 key tweaks.

All curve arithmetic goes through coincurve (libsecp256k1): it is constant-time where secrets are
involved and far faster than Python integers. This module only shapes the bytes around it.
"""

from coincurve import PrivateKey, PublicKey, PublicKeyXOnly

from exitd.ark.hashes import tagged_hash

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def is_valid_pubkey(b: bytes) -> bool:
    """True for a 33-byte compressed SEC encoding of a point on the curve.

    libsecp256k1 also parses 65-byte uncompressed and hybrid keys; Ark and taproot never use them,
    so they are rejected here before it gets the chance.
    """
    if len(b) != 33 or b[0] not in (0x02, 0x03):
        return False
    try:
        PublicKey(b)
    except ValueError:
        return False
    return True


def is_valid_xonly(b: bytes) -> bool:
    """True for a 32-byte BIP340 x coordinate (below the field size, with a point on the curve)."""
    if len(b) != 32:
        return False
    try:
        PublicKeyXOnly(b)
    except ValueError:
        return False
    return True


def xonly(pubkey33: bytes) -> bytes:
    """The BIP340 x-only form of a compressed key: its x coordinate, dropping the parity byte."""
    if len(pubkey33) != 33 or pubkey33[0] not in (0x02, 0x03):
        raise ValueError(f"expected a 33-byte compressed public key, got {len(pubkey33)} bytes")
    return pubkey33[1:]


def pubkey_from_seckey(sk32: bytes) -> bytes:
    """The 33-byte compressed public key of a secret key in [1, n-1]."""
    _check_seckey(sk32)
    return bytes(PrivateKey(sk32).public_key.format(compressed=True))


def schnorr_sign(seckey32: bytes, msg32: bytes, aux_rand32: bytes | None = None) -> bytes:
    """BIP340 signature of a 32-byte message (here always a sighash).

    Without aux_rand32 the nonce mixes in 32 fresh random bytes, as BIP340 recommends against
    side-channel and fault attacks; pass it explicitly only to reproduce test vectors.
    coincurve verifies each signature before returning it, which is BIP340's other recommendation.
    """
    _check_seckey(seckey32)
    if len(msg32) != 32:
        raise ValueError(f"the message to sign must be 32 bytes, got {len(msg32)}")
    if aux_rand32 is not None and len(aux_rand32) != 32:
        raise ValueError(f"aux_rand must be 32 bytes, got {len(aux_rand32)}")
    # coincurve draws the 32 fresh random bytes itself when given b"".
    return bytes(PrivateKey(seckey32).sign_schnorr(msg32, aux_rand32 if aux_rand32 is not None else b""))


def schnorr_verify(xonly32: bytes, msg: bytes, sig64: bytes) -> bool:
    """BIP340 verification. A key that is not a valid x coordinate makes it False, as in BIP340.

    The message may have any length (BIP340 allows it; Bitcoin only ever verifies 32-byte sighashes).
    """
    if len(sig64) != 64:
        raise ValueError(f"a BIP340 signature is 64 bytes, got {len(sig64)}")
    if not is_valid_xonly(xonly32):
        return False
    return bool(PublicKeyXOnly(xonly32).verify(sig64, msg))


def tweak_xonly(xonly32: bytes, tweak32: bytes) -> tuple[bytes, int]:
    """Q = lift_x(P) + t*G, returned as (x(Q), parity of y(Q)).

    This is both the BIP341 output-key tweak and the BIP327 x-only tweak. The parity is what a
    taproot control block carries so that a script-path spend can recompute Q from P.
    """
    if not is_valid_xonly(xonly32):
        raise ValueError("the key to tweak is not a valid x-only public key")
    if len(tweak32) != 32 or int.from_bytes(tweak32, "big") >= SECP256K1_ORDER:
        raise ValueError("the tweak must be 32 bytes and below the curve order")
    key = PublicKeyXOnly(xonly32)
    try:
        key.tweak_add(tweak32)
    except ValueError:  # t*G == -P: the tweaked key would be the point at infinity
        raise ValueError("the tweak cancels the key (the result is the point at infinity)") from None
    return bytes(key.format()), int(key.parity)


def tweak_seckey_xonly(sk32: bytes, tweak32: bytes) -> bytes:
    """The secret key of tweak_xonly(x(P), t) for P = sk*G.

    x(P) stands for the point with even y, so the secret is negated first when P has odd y, then t is
    added: BIP341's taproot_tweak_seckey with the tweak given, and BIP327's x-only tweak seen from the
    secret side. Whether the tweaked point has odd y is BIP340 signing's business.
    """
    _check_seckey(sk32)
    if len(tweak32) != 32 or int.from_bytes(tweak32, "big") >= SECP256K1_ORDER:
        raise ValueError("the tweak must be 32 bytes and below the curve order")
    d = int.from_bytes(sk32, "big")
    if pubkey_from_seckey(sk32)[0] == 0x03:
        d = SECP256K1_ORDER - d
    tweaked = (d + int.from_bytes(tweak32, "big")) % SECP256K1_ORDER
    if tweaked == 0:
        raise ValueError("the tweaked secret key is zero")
    return tweaked.to_bytes(32, "big")


def tweak_seckey_for_taproot(sk32: bytes, merkle_root: bytes | None) -> bytes:
    """The secret key that signs for a BIP341 output key on the key path: the internal secret tweaked by
    the TapTweak hash that taproot.py commits to (BIP341 taproot_tweak_seckey)."""
    internal = xonly(pubkey_from_seckey(sk32))
    return tweak_seckey_xonly(sk32, tagged_hash("TapTweak", internal + (merkle_root or b"")))


def _check_seckey(sk32: bytes) -> None:
    if len(sk32) != 32 or not 0 < int.from_bytes(sk32, "big") < SECP256K1_ORDER:
        raise ValueError("a secret key must be 32 bytes encoding an integer in [1, n-1]")
