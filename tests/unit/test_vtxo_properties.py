"""Property tests: hostile bytes only ever produce typed errors, and valid encodings round-trip exactly."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exitd.ark.encoding import (
    MAX_BLOCK_DELTA,
    MAX_BLOCK_HEIGHT,
    OutPoint,
    TxOut,
    VtxoDecodeError,
    VtxoError,
)
from exitd.ark.exit_tx import (
    InvalidSignature,
    VtxoIdMismatch,
    build_exit_chain,
    validate_vtxo,
    verify_signatures,
)
from exitd.ark.hashes import sha256
from exitd.ark.key import SECP256K1_ORDER, pubkey_from_seckey, xonly
from exitd.ark.policy import (
    CheckpointPolicy,
    ExpiryPolicy,
    HarkForfeitPolicy,
    HarkLeafPolicy,
    HashLockVersion,
    Policy,
    PubkeyPolicy,
    ServerHtlcRecvPolicy,
    ServerHtlcSendPolicy,
    ServerOwnedPolicy,
)
from exitd.ark.transition import (
    ArkoorTransition,
    CosignedTransition,
    HashLockedCosignedTransition,
    Transition,
)
from exitd.ark.vtxo import GenesisItem, Vtxo, decode_vtxo
from tests.support.vectors import ALL_VECTORS

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)

# -- mutations of real encodings ---------------------------------------------------------------------


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(ALL_VECTORS)).data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"])):
            case "flip" if at < len(data):
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "set" if at < len(data):
                data[at] = draw(st.integers(0, 255))
            case "truncate":
                del data[at:]
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=40))
            case "delete":
                del data[at : at + draw(st.integers(1, 40))]
    return bytes(data)


@PROPERTY_SETTINGS
@given(mutated_encodings())
def test_mutated_encodings_fail_only_with_typed_errors(data: bytes) -> None:
    for allow_server_policy in (False, True):
        try:
            vtxo = decode_vtxo(data, allow_server_policy=allow_server_policy)
        except VtxoDecodeError:
            continue
        if data[:2] == b"\x02\x00":
            assert vtxo.encode() == data
    with contextlib.suppress(VtxoError):
        validate_vtxo(data, allow_server_policy=True, allow_unfinished=True)


# -- generated valid VTXOs ----------------------------------------------------------------------------

pubkeys = st.integers(1, SECP256K1_ORDER - 1).map(lambda k: pubkey_from_seckey(k.to_bytes(32, "big")))
hashes = st.binary(min_size=32, max_size=32)
signatures = st.none() | st.binary(min_size=64, max_size=64).filter(lambda s: s != bytes(64))
versions = st.sampled_from(HashLockVersion)
amounts = st.integers(0, 10**12)
heights = st.integers(0, MAX_BLOCK_HEIGHT)
deltas = st.integers(0, MAX_BLOCK_DELTA)
outpoints = st.builds(OutPoint, hashes, st.integers(0, 0xFFFF_FFFF))


@st.composite
def hash_locked(draw: st.DrawFn) -> HashLockedCosignedTransition:
    user, signature, version = draw(pubkeys), draw(signatures), draw(versions)
    if draw(st.booleans()):
        preimage = draw(hashes)
        return HashLockedCosignedTransition(user, signature, sha256(preimage), preimage, version)
    return HashLockedCosignedTransition(user, signature, draw(hashes), None, version)


transitions: st.SearchStrategy[Transition] = st.one_of(
    st.builds(CosignedTransition, st.lists(pubkeys, min_size=1, max_size=4).map(tuple), signatures),
    st.builds(
        ArkoorTransition,
        st.lists(pubkeys, max_size=3).map(tuple),
        st.integers(0, SECP256K1_ORDER - 1).map(lambda t: t.to_bytes(32, "big")),
        signatures,
    ),
    hash_locked(),
)

policies: st.SearchStrategy[Policy] = st.one_of(
    st.builds(PubkeyPolicy, pubkeys),
    st.builds(ServerHtlcSendPolicy, pubkeys, hashes, heights, versions),
    st.builds(ServerHtlcRecvPolicy, pubkeys, hashes, heights, deltas, versions),
    st.builds(CheckpointPolicy, pubkeys),
    st.builds(ExpiryPolicy, pubkeys.map(xonly)),
    st.builds(HarkLeafPolicy, pubkeys, hashes, versions),
    st.builds(HarkForfeitPolicy, pubkeys, hashes, versions),
    st.just(ServerOwnedPolicy()),
)


@st.composite
def genesis_items(draw: st.DrawFn) -> GenesisItem:
    siblings = draw(st.lists(st.builds(TxOut, amounts, st.binary(max_size=100)), max_size=4))
    output_idx = draw(st.integers(0, len(siblings)))
    return GenesisItem(draw(transitions), output_idx, tuple(siblings), draw(amounts))


@st.composite
def vtxos(draw: st.DrawFn) -> Vtxo:
    anchor = draw(outpoints)
    point = draw(outpoints.filter(lambda p: p != anchor))
    return Vtxo(
        amount=draw(amounts),
        expiry_height=draw(heights),
        server_pubkey=draw(pubkeys),
        exit_delta=draw(deltas),
        anchor_point=anchor,
        genesis=tuple(draw(st.lists(genesis_items(), min_size=1, max_size=4))),
        policy=draw(policies),
        point=point,
    )


@PROPERTY_SETTINGS
@given(vtxos())
def test_valid_v2_encodings_roundtrip_exactly(vtxo: Vtxo) -> None:
    data = vtxo.encode()
    decoded = decode_vtxo(data, allow_server_policy=True)
    assert decoded == vtxo
    assert decoded.encode() == data
    if vtxo.policy.is_user_policy:
        assert decode_vtxo(data) == vtxo


@settings(max_examples=100, deadline=None)
@given(vtxos())
def test_any_valid_genesis_rebuilds_to_its_own_point(vtxo: Vtxo) -> None:
    """A generated genesis rebuilds without error; pointed at where its chain really ends, it passes the
    id self-check, and its random signatures (if any) are caught."""
    with pytest.raises(VtxoIdMismatch) as e:
        build_exit_chain(vtxo)
    assert e.value.expected == vtxo.point
    chain = build_exit_chain(replace(vtxo, point=e.value.rebuilt))
    assert chain.txs[-1].outpoint == e.value.rebuilt
    if all(item.transition.signature is None for item in vtxo.genesis):
        assert verify_signatures(chain) == 0
    else:
        with pytest.raises(InvalidSignature):
            verify_signatures(chain)
