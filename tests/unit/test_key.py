import csv
import json
from pathlib import Path
from typing import Any

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

BIP_VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "bip-vectors"
BIP340_CSV = BIP_VECTORS / "bip340_test_vectors.csv"
BIP341_JSON = BIP_VECTORS / "bip341_wallet_vectors.json"

GENERATOR = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")

# BIP340 vectors 1 (sign and verify) and 5, 14 (invalid public keys), kept inline so that these tests
# run without ../shared.
BIP340_VECTOR_1 = {
    "seckey": "B7E151628AED2A6ABF7158809CF4F3C762E7160F38B4DA56A784D9045190CFEF",
    "pubkey": "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
    "aux_rand": "0000000000000000000000000000000000000000000000000000000000000001",
    "message": "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
    "signature": "6896BD60EEAE296DB48A229FF71DFE071BDE413E6D43F917DC8DCF8C78DE3341"
    "8906D11AC976ABCCB20B091292BFF4EA897EFCB639EA871CFA95F6DE339E4B0A",
}
NOT_ON_CURVE_XONLY = "EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34"
ABOVE_FIELD_SIZE_XONLY = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC30"


def load_bip340_vectors() -> list[dict[str, str]]:
    if not BIP340_CSV.exists():
        pytest.skip(f"BIP340 vectors not found at {BIP340_CSV} (../shared is missing)")
    with BIP340_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def load_bip341_vectors() -> Any:
    if not BIP341_JSON.exists():
        pytest.skip(f"BIP341 wallet vectors not found at {BIP341_JSON} (../shared is missing)")
    return json.loads(BIP341_JSON.read_text())


def test_bip340_vector_1_inline() -> None:
    v = {k: bytes.fromhex(x) for k, x in BIP340_VECTOR_1.items()}
    assert xonly(pubkey_from_seckey(v["seckey"])) == v["pubkey"]
    assert schnorr_sign(v["seckey"], v["message"], v["aux_rand"]) == v["signature"]
    assert schnorr_verify(v["pubkey"], v["message"], v["signature"])
    flipped = v["signature"][:-1] + bytes([v["signature"][-1] ^ 1])
    assert not schnorr_verify(v["pubkey"], v["message"], flipped)
    assert not schnorr_verify(bytes.fromhex(NOT_ON_CURVE_XONLY), v["message"], v["signature"])


def test_bip340_sign_vectors() -> None:
    signed = 0
    for row in load_bip340_vectors():
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
    rows = load_bip340_vectors()
    for row in rows:
        result = schnorr_verify(
            bytes.fromhex(row["public key"]), bytes.fromhex(row["message"]), bytes.fromhex(row["signature"])
        )
        assert result == (row["verification result"] == "TRUE"), (row["index"], row["comment"])
    assert len(rows) == 19


def test_schnorr_sign_uses_fresh_randomness_by_default() -> None:
    seckey = bytes.fromhex(BIP340_VECTOR_1["seckey"])
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
        schnorr_sign(bytes.fromhex(BIP340_VECTOR_1["seckey"]), bytes(31))
    with pytest.raises(ValueError, match="aux_rand"):
        schnorr_sign(bytes.fromhex(BIP340_VECTOR_1["seckey"]), bytes(32), bytes(31))
    with pytest.raises(ValueError, match="64 bytes"):
        schnorr_verify(bytes.fromhex(BIP340_VECTOR_1["pubkey"]), bytes(32), bytes(63))


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


def test_tweak_xonly_bip341_output_keys() -> None:
    # BIP341 wallet vectors, scriptPubKey 0 (inline): the key-path-only output key.
    internal = bytes.fromhex("d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d")
    tweak = bytes.fromhex("b86e7be8f39bab32a6f2c0443abbc210f0edac0e2c53d501b36b64437d9c6c70")
    output, _ = tweak_xonly(internal, tweak)
    assert output.hex() == "53a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343"


def test_tweak_xonly_all_bip341_vectors() -> None:
    for case in load_bip341_vectors()["scriptPubKey"]:
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
    for spend in load_bip341_vectors()["keyPathSpending"][0]["inputSpending"]:
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


def test_tweak_seckey_for_taproot_inline() -> None:
    # BIP341 keyPathSpending inputs 0 (even y, no script tree) and 3 (odd y, one leaf), inline.
    sk = bytes.fromhex("6b973d88838f27366ed61c9ad6367663045cb456e28335c109e30717ae0c6baa")
    assert pubkey_from_seckey(sk)[0] == 0x02
    tweaked = tweak_seckey_for_taproot(sk, None)
    assert tweaked.hex() == "2405b971772ad26915c8dcdf10f238753a9b837e5f8e6a86fd7c0cce5b7296d9"
    sk = bytes.fromhex("d3c7af07da2d54f7a7735d3d0fc4f0a73164db638b2f2f7c43f711f6d4aa7e64")
    assert pubkey_from_seckey(sk)[0] == 0x03
    merkle_root = bytes.fromhex("c525714a7f49c28aedbbba78c005931a81c234b2f6c99a73e4d06082adc8bf2b")
    tweaked = tweak_seckey_for_taproot(sk, merkle_root)
    assert tweaked.hex() == "97323385e57015b75b0339a549c56a948eb961555973f0951f555ae6039ef00d"


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
