import pytest

from exitd.ark.hashes import tagged_hash
from exitd.ark.key import (
    SECP256K1_ORDER,
    is_valid_pubkey,
    is_valid_xonly,
    pubkey_from_seckey,
    schnorr_sign,
    schnorr_verify,
    tweak_seckey_for_taproot,
    tweak_seckey_xonly,
    tweak_xonly,
    xonly,
)
from tests.support.vectors import bip340_vectors, bip341_wallet_vectors

GENERATOR = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
# BIP340 vector 5 and BIP327's key_agg_vectors: an x not on the curve, an x above the field size.
NOT_ON_CURVE_XONLY = "EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34"
ABOVE_FIELD_SIZE_XONLY = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC30"
BIP340_VECTOR_1 = bip340_vectors()[1]


def test_bip340_sign_vectors() -> None:
    signed = 0
    for row in bip340_vectors():
        if not row["secret key"] or len(row["message"]) != 64:
            # Rows without a key are verification-only; coincurve signs 32-byte messages only,
            # which is all Bitcoin signs (the variable-length rows are verified below).
            continue
        seckey = bytes.fromhex(row["secret key"])
        assert xonly(pubkey_from_seckey(seckey)).hex().upper() == row["public key"], row["index"]
        sig = schnorr_sign(seckey, bytes.fromhex(row["message"]), bytes.fromhex(row["aux_rand"]))
        assert sig.hex().upper() == row["signature"], row["index"]
        signed += 1
    assert signed == 4


def test_bip340_verify_vectors() -> None:
    rows = bip340_vectors()
    for row in rows:
        result = schnorr_verify(
            bytes.fromhex(row["public key"]), bytes.fromhex(row["message"]), bytes.fromhex(row["signature"])
        )
        assert result == (row["verification result"] == "TRUE"), (row["index"], row["comment"])
    assert len(rows) == 19


def test_schnorr_sign_uses_fresh_randomness_by_default() -> None:
    seckey = bytes.fromhex(BIP340_VECTOR_1["secret key"])
    msg = bytes(32)
    sig_a, sig_b = schnorr_sign(seckey, msg), schnorr_sign(seckey, msg)
    assert sig_a != sig_b
    assert schnorr_verify(xonly(pubkey_from_seckey(seckey)), msg, sig_a)
    assert schnorr_verify(xonly(pubkey_from_seckey(seckey)), msg, sig_b)


def test_schnorr_sign_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="secret key"):
        schnorr_sign(bytes(32), bytes(32))
    with pytest.raises(ValueError, match="secret key"):
        schnorr_sign(SECP256K1_ORDER.to_bytes(32, "big"), bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        schnorr_sign(bytes.fromhex(BIP340_VECTOR_1["secret key"]), bytes(31))
    with pytest.raises(ValueError, match="aux_rand"):
        schnorr_sign(bytes.fromhex(BIP340_VECTOR_1["secret key"]), bytes(32), bytes(31))
    with pytest.raises(ValueError, match="64 bytes"):
        schnorr_verify(bytes.fromhex(BIP340_VECTOR_1["public key"]), bytes(32), bytes(63))


def test_is_valid_pubkey() -> None:
    assert is_valid_pubkey(GENERATOR)
    assert is_valid_pubkey(bytes([0x03]) + GENERATOR[1:])
    # BIP327 key_agg_vectors: x not on the curve, x above the field size, bad prefix byte.
    assert not is_valid_pubkey(bytes.fromhex("02" + "00" * 31 + "05"))
    assert not is_valid_pubkey(bytes.fromhex("02" + ABOVE_FIELD_SIZE_XONLY))
    assert not is_valid_pubkey(
        bytes.fromhex("04F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9")
    )
    # An uncompressed encoding of a valid point: libsecp256k1 accepts it, Ark does not.
    uncompressed = bytes.fromhex(
        "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
    )
    assert not is_valid_pubkey(uncompressed)
    assert not is_valid_pubkey(GENERATOR[:-1])


def test_is_valid_xonly() -> None:
    assert is_valid_xonly(GENERATOR[1:])
    assert not is_valid_xonly(bytes.fromhex(NOT_ON_CURVE_XONLY))
    assert not is_valid_xonly(bytes.fromhex(ABOVE_FIELD_SIZE_XONLY))
    assert not is_valid_xonly(GENERATOR)


def test_xonly() -> None:
    assert xonly(GENERATOR) == GENERATOR[1:]
    with pytest.raises(ValueError, match="33-byte"):
        xonly(GENERATOR[1:])


def test_pubkey_from_seckey() -> None:
    assert pubkey_from_seckey((1).to_bytes(32, "big")) == GENERATOR
    with pytest.raises(ValueError):
        pubkey_from_seckey(bytes(32))


def test_tweak_xonly_all_bip341_vectors() -> None:
    for case in bip341_wallet_vectors()["scriptPubKey"]:
        internal = bytes.fromhex(case["given"]["internalPubkey"])
        output, parity = tweak_xonly(internal, bytes.fromhex(case["intermediary"]["tweak"]))
        assert output.hex() == case["intermediary"]["tweakedPubkey"]
        for control_block in case["expected"].get("scriptPathControlBlocks", []):
            assert int(control_block[:2], 16) & 1 == parity


def test_tweak_xonly_rejects_bad_tweaks() -> None:
    g = GENERATOR[1:]
    with pytest.raises(ValueError, match="below the curve order"):
        tweak_xonly(g, SECP256K1_ORDER.to_bytes(32, "big"))
    with pytest.raises(ValueError, match="32 bytes"):
        tweak_xonly(g, bytes(31))
    # lift_x(x(G)) is G itself (its y is even), and G + (n-1)G is the point at infinity.
    with pytest.raises(ValueError, match="infinity"):
        tweak_xonly(g, (SECP256K1_ORDER - 1).to_bytes(32, "big"))
    with pytest.raises(ValueError, match="x-only"):
        tweak_xonly(bytes.fromhex(NOT_ON_CURVE_XONLY), bytes(32))


def test_tweak_seckey_for_taproot_bip341_vectors() -> None:
    for spend in bip341_wallet_vectors()["keyPathSpending"][0]["inputSpending"]:
        given, intermediary = spend["given"], spend["intermediary"]
        sk = bytes.fromhex(given["internalPrivkey"])
        merkle_root = bytes.fromhex(given["merkleRoot"]) if given["merkleRoot"] else None
        tweaked = tweak_seckey_for_taproot(sk, merkle_root)
        assert tweaked.hex() == intermediary["tweakedPrivkey"]
        assert xonly(pubkey_from_seckey(sk)).hex() == intermediary["internalPubkey"]
        # The tweaked key signs for the output key: the same key tweak_xonly derives publicly.
        output, _ = tweak_xonly(
            bytes.fromhex(intermediary["internalPubkey"]), bytes.fromhex(intermediary["tweak"])
        )
        assert xonly(pubkey_from_seckey(tweaked)) == output
        # The expected witness signatures were made with all-zero aux randomness.
        sig = schnorr_sign(tweaked, bytes.fromhex(intermediary["sigHash"]), bytes(32))
        assert sig.hex() == spend["expected"]["witness"][0][:128]


def test_tweak_seckey_xonly_signs_for_the_tweaked_xonly_key() -> None:
    # Both parities of P: the secret is negated first when y(P) is odd, since x(P) means the even point.
    parities = set()
    for i in range(1, 9):
        sk = i.to_bytes(32, "big")
        tweak = tagged_hash("exitd test", sk)
        parities.add(pubkey_from_seckey(sk)[0])
        tweaked = pubkey_from_seckey(tweak_seckey_xonly(sk, tweak))
        output, parity = tweak_xonly(xonly(pubkey_from_seckey(sk)), tweak)
        assert xonly(tweaked) == output and tweaked[0] == 0x02 + parity
    assert parities == {0x02, 0x03}
    with pytest.raises(ValueError, match="curve order"):
        tweak_seckey_xonly((1).to_bytes(32, "big"), SECP256K1_ORDER.to_bytes(32, "big"))
