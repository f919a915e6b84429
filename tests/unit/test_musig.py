import os

import pytest

from exitd.ark.key import SECP256K1_ORDER, pubkey_from_seckey, xonly
from exitd.ark.musig import InvalidPubkey, key_agg, key_agg_coefficients, key_agg_unsorted, key_sort

# BIP327 vectors/key_agg_vectors.json, typed in from the BIP repository.
KEY_AGG_PUBKEYS = [
    bytes.fromhex(k)
    for k in (
        "02F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9",
        "03DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "023590A94E768F8E1815C2F24B4D80A8E3149316C3518CE7B7AD338368D038CA66",
        "020000000000000000000000000000000000000000000000000000000000000005",
        "02FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC30",
        "04F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9",
        "03935F972DA013F80AE011890FA89B67A27B7BE6CCB24D3274D18B2D4067F261A9",
    )
]
KEY_AGG_VALID = [
    ([0, 1, 2], "90539EEDE565F5D054F32CC0C220126889ED1E5D193BAF15AEF344FE59D4610C"),
    ([2, 1, 0], "6204DE8B083426DC6EAF9502D27024D53FC826BF7D2012148A0575435DF54B2B"),
    ([0, 0, 0], "B436E3BAD62B8CD409969A224731C193D051162D8C5AE8B109306127DA3AA935"),
    ([0, 0, 1, 1], "69BC22BFA5D106306E48A20679DE1D7389386124D07571D0D872686028C26A3E"),
]
# The error cases without tweaks: (key indices, index of the invalid contribution).
KEY_AGG_INVALID = [([0, 3], 1), ([0, 4], 1), ([5, 0], 0)]


def libsecp256k1_key_agg(pubkeys: list[bytes]) -> bytes:
    """The same aggregation by libsecp256k1's musig module (what bark links), keys in the given order."""
    lib_module = pytest.importorskip("coincurve._libsecp256k1")
    lib, ffi = lib_module.lib, lib_module.ffi
    if not hasattr(lib, "secp256k1_musig_pubkey_agg"):
        pytest.skip("this coincurve build has no musig module")
    from coincurve.context import GLOBAL_CONTEXT

    ctx = GLOBAL_CONTEXT.ctx
    parsed = []
    for pk in pubkeys:
        point = ffi.new("secp256k1_pubkey *")
        assert lib.secp256k1_ec_pubkey_parse(ctx, point, pk, len(pk))
        parsed.append(point)
    cache = ffi.new("secp256k1_musig_keyagg_cache *")
    assert lib.secp256k1_musig_pubkey_agg(ctx, ffi.NULL, cache, parsed, len(parsed))
    aggregate = ffi.new("secp256k1_pubkey *")
    assert lib.secp256k1_musig_pubkey_get(ctx, aggregate, cache)
    out = ffi.new("unsigned char[33]")
    out_len = ffi.new("size_t *", 33)
    assert lib.secp256k1_ec_pubkey_serialize(ctx, out, out_len, aggregate, lib.SECP256K1_EC_COMPRESSED)
    return bytes(ffi.buffer(out, 33))


@pytest.mark.parametrize(("indices", "expected"), KEY_AGG_VALID)
def test_bip327_key_agg_vectors(indices: list[int], expected: str) -> None:
    aggregate = key_agg_unsorted([KEY_AGG_PUBKEYS[i] for i in indices])
    assert len(aggregate) == 33
    assert xonly(aggregate).hex().upper() == expected


@pytest.mark.parametrize(("indices", "bad_index"), KEY_AGG_INVALID)
def test_bip327_key_agg_invalid_contribution(indices: list[int], bad_index: int) -> None:
    pubkeys = [KEY_AGG_PUBKEYS[i] for i in indices]
    with pytest.raises(InvalidPubkey) as excinfo:
        key_agg_unsorted(pubkeys)
    assert excinfo.value.index == bad_index
    with pytest.raises(InvalidPubkey) as excinfo:
        key_agg(pubkeys)
    assert excinfo.value.index == bad_index


def test_key_agg_sorts_first() -> None:
    # Vectors 1 and 2 hold the same keys in different orders; sorted, they agree.
    forward = [KEY_AGG_PUBKEYS[i] for i in (0, 1, 2)]
    assert key_agg(forward) == key_agg(forward[::-1]) == key_agg_unsorted(key_sort(forward))
    assert key_sort(forward) == [KEY_AGG_PUBKEYS[2], KEY_AGG_PUBKEYS[0], KEY_AGG_PUBKEYS[1]]


def test_key_agg_keeps_duplicates() -> None:
    k0, k1 = KEY_AGG_PUBKEYS[0], KEY_AGG_PUBKEYS[1]
    assert key_agg([k0, k1, k0, k1]) == key_agg_unsorted([k0, k0, k1, k1])
    assert key_agg([k0, k1, k1]) != key_agg([k0, k1])


def test_key_agg_of_bark_board() -> None:
    # bark's board vector (vtxo-vectors.json): the cosign internal key of MuSig(user, server).
    user = bytes.fromhex("030a752219f1b94bbdf8994a0a980cdda08c2ad094cb29dd834878db6dee1612ee")
    server = bytes.fromhex("0365a81233741893bbe2461b8d479dadc5880594fe6f7479180d5843820af72b62")
    expected = "7db2187a69f1a4fc7685e2a32e70583701d5ca90f554a3aa26cd45827cb1ab2b"
    assert xonly(key_agg([user, server])).hex() == expected
    assert xonly(key_agg([server, user])).hex() == expected


def test_key_agg_single_key_and_empty() -> None:
    # With one key there is no "second key", so even it gets a hashed coefficient: Q != P.
    k0 = KEY_AGG_PUBKEYS[0]
    assert key_agg([k0]) != k0
    with pytest.raises(ValueError, match="at least one"):
        key_agg([])


def test_key_agg_matches_libsecp256k1_musig() -> None:
    # The full point, parity included: the BIP vectors only give x(Q).
    for indices, _ in KEY_AGG_VALID:
        pubkeys = [KEY_AGG_PUBKEYS[i] for i in indices]
        assert key_agg_unsorted(pubkeys) == libsecp256k1_key_agg(pubkeys)
    for n in (1, 2, 3, 5):
        pubkeys = [pubkey_from_seckey(os.urandom(32)) for _ in range(n)]
        pubkeys.append(pubkeys[0])
        assert key_agg(pubkeys) == libsecp256k1_key_agg(key_sort(pubkeys))


def test_key_agg_coefficients_weigh_the_secret_keys_of_the_aggregate() -> None:
    # sum(a_i * sk_i) is the secret of Q, checked against libsecp256k1's aggregation, duplicates included.
    for n in (1, 2, 3, 5):
        seckeys = [os.urandom(32) for _ in range(n)]
        seckeys.append(seckeys[-1])
        pubkeys = [pubkey_from_seckey(sk) for sk in seckeys]
        coefficients = key_agg_coefficients(pubkeys)
        secret = sum(a * int.from_bytes(sk, "big") for a, sk in zip(coefficients, seckeys, strict=True))
        aggregate_secret = (secret % SECP256K1_ORDER).to_bytes(32, "big")
        assert pubkey_from_seckey(aggregate_secret) == libsecp256k1_key_agg(pubkeys)


def test_key_agg_coefficients_second_key_is_one() -> None:
    k0, k1 = KEY_AGG_PUBKEYS[0], KEY_AGG_PUBKEYS[1]
    coefficients = key_agg_coefficients([k0, k0, k1, k1])
    assert coefficients[2:] == [1, 1] and coefficients[0] == coefficients[1] != 1
    assert 1 not in key_agg_coefficients([k0, k0, k0])  # no second key at all
