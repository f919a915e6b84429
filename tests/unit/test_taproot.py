from typing import Any

import pytest

from exitd.ark.taproot import (
    TAPROOT_LEAF_TAPSCRIPT,
    TapLeaf,
    TapTree,
    tap_branch_hash,
    tap_leaf_hash,
    tap_tweak_hash,
    taproot_from_leaves,
    taproot_from_tree,
)
from tests.support.vectors import bip341_wallet_vectors


def tree_from_json(node: Any, leaves_by_id: dict[int, TapLeaf]) -> TapTree:
    """The vectors write a leaf as {id, script, leafVersion} and a branch as a 2-element list."""
    if isinstance(node, dict):
        leaf = TapLeaf(bytes.fromhex(node["script"]), node["leafVersion"])
        leaves_by_id[node["id"]] = leaf
        return leaf
    left, right = node
    return (tree_from_json(left, leaves_by_id), tree_from_json(right, leaves_by_id))


def test_bip341_script_pubkey_vectors() -> None:
    vectors = bip341_wallet_vectors()["scriptPubKey"]
    for case in vectors:
        given, intermediary, expected = case["given"], case["intermediary"], case["expected"]
        leaves_by_id: dict[int, TapLeaf] = {}
        tree = None if given["scriptTree"] is None else tree_from_json(given["scriptTree"], leaves_by_id)
        info = taproot_from_tree(bytes.fromhex(given["internalPubkey"]), tree)

        leaves = [leaves_by_id[i] for i in sorted(leaves_by_id)]
        assert [leaf.leaf_hash.hex() for leaf in leaves] == intermediary.get("leafHashes", [])
        assert (info.merkle_root.hex() if info.merkle_root else None) == intermediary["merkleRoot"]
        assert info.tweak.hex() == intermediary["tweak"]
        assert info.output_key.hex() == intermediary["tweakedPubkey"]
        assert info.script_pubkey.hex() == expected["scriptPubKey"]
        control_blocks = [info.control_block(leaf.script, leaf.leaf_version).hex() for leaf in leaves]
        assert control_blocks == expected.get("scriptPathControlBlocks", [])
    assert len(vectors) == 7


def test_bip341_single_leaf_inline() -> None:
    # BIP341 wallet vectors, scriptPubKey 1.
    internal = bytes.fromhex("187791b6f712a8ea41c8ecdd0ee77fab3e85263b37e1ec18a3651926b3a6cf27")
    script = bytes.fromhex("20d85a959b0290bf19bb89ed43c916be835475d013da4b362117393e25a48229b8ac")
    info = taproot_from_leaves(internal, [script])
    assert tap_leaf_hash(script).hex() == "5b75adecf53548f3ec6ad7d78383bf84cc57b55a3127c72b9a2481752dd88b21"
    assert info.merkle_root == tap_leaf_hash(script)
    assert info.tweak.hex() == "cbd8679ba636c1110ea247542cfbd964131a6be84f873f7f3b62a777528ed001"
    assert info.output_key.hex() == "147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3"
    assert info.output_parity == 1
    assert info.control_block(script).hex() == "c1" + internal.hex()


def test_bip341_two_leaves_inline() -> None:
    # BIP341 wallet vectors, scriptPubKey 3: a depth-1 pair, one leaf of version 0xfa.
    internal = bytes.fromhex("ee4fe085983462a184015d1f782d6a5f8b9c2b60130aff050ce221ecf3786592")
    first = TapLeaf(bytes.fromhex("20387671353e273264c495656e27e39ba899ea8fee3bb69fb2a680e22093447d48ac"))
    second = TapLeaf(bytes.fromhex("06424950333431"), 0xFA)
    info = taproot_from_tree(internal, (first, second))
    assert info.merkle_root is not None
    assert info.merkle_root.hex() == "6c2dc106ab816b73f9d07e3cd1ef2c8c1256f519748e0813e4edd2405d277bef"
    assert info.output_key.hex() == "712447206d7a5238acc7ff53fbe94a3b64539ad291c7cdbc490b7577e4b17df5"
    assert info.control_block(first.script).hex() == (
        "c0" + internal.hex() + "f224a923cd0021ab202ab139cc56802ddb92dcfc172b9212261a539df79a112a"
    )
    assert info.control_block(second.script, 0xFA).hex() == (
        "fa" + internal.hex() + "8ad69ec7cf41c2a4001fd1f738bf1e505ce2277acdcaa63fe4765192497f47a7"
    )
    assert taproot_from_tree(internal, (second, first)).output_key == info.output_key


def test_key_path_only() -> None:
    # BIP341 wallet vectors, scriptPubKey 0, and BIP86's first receiving address.
    internal = bytes.fromhex("d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d")
    info = taproot_from_leaves(internal, [])
    assert info.merkle_root is None
    assert info.tweak == tap_tweak_hash(internal, None)
    assert info.script_pubkey.hex() == "512053a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343"
    assert info.leaves == ()
    bip86 = taproot_from_leaves(
        bytes.fromhex("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115"), []
    )
    assert bip86.output_key.hex() == "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"


def test_bark_board_policy_taproot() -> None:
    # vtxo-vectors.json, board_vtxo: Pubkey policy, internal key x(KeyAgg(user, server)), leaf
    # delayed_sign(2016, x(user)).
    internal = bytes.fromhex("7db2187a69f1a4fc7685e2a32e70583701d5ca90f554a3aa26cd45827cb1ab2b")
    leaf = bytes.fromhex("02e007b275200a752219f1b94bbdf8994a0a980cdda08c2ad094cb29dd834878db6dee1612eeac")
    info = taproot_from_leaves(internal, [leaf])
    assert info.tweak.hex() == "78b9640f859155786c4923b1d634d20b02663f1c4d061c4411f15e386951a63f"
    assert info.script_pubkey.hex() == "5120e2b1152658195dae2fb792bdf7adb276e1c21f06b33588b9bd8429591bb964ea"
    assert info.output_parity == 0
    assert info.control_block(leaf).hex() == "c0" + internal.hex()


def test_two_leaves_are_order_independent() -> None:
    internal = bytes.fromhex("7db2187a69f1a4fc7685e2a32e70583701d5ca90f554a3aa26cd45827cb1ab2b")
    a, b = b"\x51", b"\x52"
    ab, ba = taproot_from_leaves(internal, [a, b]), taproot_from_leaves(internal, [b, a])
    assert ab.merkle_root == ba.merkle_root == tap_branch_hash(tap_leaf_hash(a), tap_leaf_hash(b))
    assert ab.output_key == ba.output_key
    assert ab.control_block(a) == ba.control_block(a)
    assert ab.control_block(a).endswith(tap_leaf_hash(b))


def test_deeper_tree_paths_run_from_leaf_to_root() -> None:
    internal = bytes.fromhex("7db2187a69f1a4fc7685e2a32e70583701d5ca90f554a3aa26cd45827cb1ab2b")
    a, b, c = b"\x51", b"\x52", b"\x53"
    info = taproot_from_tree(internal, (a, (b, c)))
    bc = tap_branch_hash(tap_leaf_hash(b), tap_leaf_hash(c))
    assert info.merkle_root == tap_branch_hash(tap_leaf_hash(a), bc)
    assert info.control_block(b)[33:] == tap_leaf_hash(c) + tap_leaf_hash(a)
    assert info.control_block(a)[33:] == bc


def test_rejects() -> None:
    internal = bytes.fromhex("7db2187a69f1a4fc7685e2a32e70583701d5ca90f554a3aa26cd45827cb1ab2b")
    with pytest.raises(ValueError, match="0, 1 or 2 leaves"):
        taproot_from_leaves(internal, [b"\x51", b"\x52", b"\x53"])
    with pytest.raises(ValueError, match="no such leaf"):
        taproot_from_leaves(internal, [b"\x51"]).control_block(b"\x52")
    with pytest.raises(ValueError, match="no such leaf"):
        taproot_from_leaves(internal, [b"\x51"]).control_block(b"\x51", TAPROOT_LEAF_TAPSCRIPT + 2)
    with pytest.raises(ValueError, match="leaf version"):
        TapLeaf(b"\x51", 0xC1)
    with pytest.raises(ValueError, match="x-only"):
        taproot_from_leaves(bytes(32), [])
