"""The regtest Ark server forge: its VTXOs validate, import over REST, and exit on chain level by level."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from bitcoin.core import b2lx

from exitd.ark.exit_tx import build_exit_chain, validate_vtxo
from exitd.ark.hashes import sha256
from exitd.ark.key import (
    pubkey_from_seckey,
    schnorr_sign,
    schnorr_verify,
    tweak_seckey_xonly,
    tweak_xonly,
    xonly,
)
from exitd.ark.musig import key_agg
from exitd.ark.policy import PolicyType, ServerHtlcRecvPolicy, ServerHtlcSendPolicy
from exitd.ark.vtxo import Vtxo
from exitd.chain.fees import btc_to_sat
from exitd.regtest.forge import (
    DEFAULT_EXIT_DELTA,
    Forge,
    ForgedVtxo,
    ForgeError,
    LeafSpec,
    UserKey,
    aggregate_seckey,
    radix_groups,
)
from exitd.regtest.node import RegtestError, RegtestNode
from exitd.wallet.keys import VtxoKeychain
from tests.support.barkd_schema import assert_valid
from tests.support.daemon import DaemonProcess

FEE_RATE = 3  # sat/vB


@pytest.fixture
def forge(bitcoind: RegtestNode) -> Forge:
    return Forge(bitcoind)


def confirmations(node: RegtestNode, txid: bytes) -> int:
    """0 for a tx in the mempool or unknown to the node."""
    try:
        return int(node.rpc("getrawtransaction", b2lx(txid), True).get("confirmations", 0))
    except RegtestError:
        return 0


def exit_level_by_level(node: RegtestNode, forge: Forge, vtxo: Vtxo) -> int:
    """Broadcast every exit tx not confirmed yet with a CPFP child, mining one block per level as TRUC
    demands; return how many were broadcast."""
    broadcast = 0
    for exit_tx in build_exit_chain(vtxo).txs:
        if confirmations(node, exit_tx.txid):
            continue
        child = forge.cpfp_child(exit_tx.tx, FEE_RATE)
        answer = node.rpc("submitpackage", [exit_tx.tx.serialize().hex(), child.serialize().hex()])
        assert answer["package_msg"] == "success", answer
        package = node.rpc("getmempoolentry", b2lx(child.GetTxid()))
        assert btc_to_sat(package["fees"]["ancestor"]) >= FEE_RATE * package["ancestorsize"]
        node.mine(1)
        assert confirmations(node, exit_tx.txid) == confirmations(node, child.GetTxid()) == 1
        broadcast += 1
    return broadcast


def assert_vtxo_output_on_chain(node: RegtestNode, vtxo: Vtxo) -> None:
    out = node.rpc("gettxout", b2lx(vtxo.point.txid), vtxo.point.vout)
    expected = vtxo.policy.script_pubkey(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
    assert btc_to_sat(out["value"]) == vtxo.amount
    assert out["scriptPubKey"]["hex"] == expected.hex()


def assert_anchor_on_chain(node: RegtestNode, forged: ForgedVtxo) -> None:
    vtxo, chain = validate_vtxo(bytes.fromhex(forged.hex))
    anchor = node.rpc("gettxout", b2lx(vtxo.anchor_point.txid), vtxo.anchor_point.vout)
    assert anchor["confirmations"] >= 1
    assert btc_to_sat(anchor["value"]) == chain.chain_anchor_txout.value
    assert anchor["scriptPubKey"]["hex"] == chain.chain_anchor_txout.script_pubkey.hex()


# -- signing with the aggregate key ------------------------------------------------------------------


@pytest.mark.parametrize("n_keys", [1, 2, 3, 5])
def test_aggregate_seckey_is_the_secret_of_key_agg(n_keys: int) -> None:
    seckeys = [os.urandom(32) for _ in range(n_keys)]
    seckeys.append(seckeys[0])  # a duplicate counts twice, as in KeyAgg
    pubkeys = [pubkey_from_seckey(sk) for sk in seckeys]
    secret = aggregate_seckey(seckeys)
    assert pubkey_from_seckey(secret) == key_agg(pubkeys)  # the full point, parity included
    assert aggregate_seckey(seckeys[::-1]) == secret  # KeySort: order does not matter

    msg = sha256(b"sighash")
    # Script path (hArk unlock leaf): BIP340 signs for the untweaked x(Q), whatever the parity of Q.
    assert schnorr_verify(xonly(key_agg(pubkeys)), msg, schnorr_sign(secret, msg))
    # Key path (Cosigned, Arkoor): the x-only tweak of x(Q), negating first when Q has odd y.
    tweak = sha256(b"tap tweak")
    output_key, _ = tweak_xonly(xonly(key_agg(pubkeys)), tweak)
    assert schnorr_verify(output_key, msg, schnorr_sign(tweak_seckey_xonly(secret, tweak), msg))


def test_radix_groups_split_near_evenly() -> None:
    assert [len(g) for g in radix_groups(list(range(8)), 3)] == [3, 3, 2]
    assert [len(g) for g in radix_groups(list(range(8)), 4)] == [2, 2, 2, 2]
    assert [list(g) for g in radix_groups([1, 2], 4)] == [[1], [2]]


# -- every shape ---------------------------------------------------------------------------------------


def test_every_shape_validates_against_its_anchor_on_chain(bitcoind: RegtestNode, forge: Forge) -> None:
    board = forge.board(10_000)
    assert board.vtxo.exit_depth == 1 and board.vtxo.genesis[0].fee_amount == 330
    assert board.user.secret is not None

    policies = [PolicyType.PUBKEY, PolicyType.SERVER_HTLC_SEND, PolicyType.SERVER_HTLC_RECV]
    specs = [LeafSpec(5_000 + i, policy_type=policies[i % 3]) for i in range(7)] + [LeafSpec(200)]
    binary = forge.tree(specs, arity=2)
    radix4 = forge.tree(specs)
    hark = forge.tree(specs[:3], hark=True)
    arkoor = forge.arkoor_chain(8_000, policy_type=PolicyType.SERVER_HTLC_SEND)

    assert [v.vtxo.exit_depth for v in binary] == [4] * 8
    assert [v.vtxo.exit_depth for v in radix4] == [3] * 8
    assert [v.vtxo.exit_depth for v in hark] == [2] * 3
    assert arkoor.vtxo.exit_depth == 5
    assert [item.transition.kind for item in arkoor.vtxo.genesis] == ["cosigned"] + ["arkoor"] * 4
    assert hark[0].vtxo.genesis[-1].transition.kind == "hash-locked-cosigned-v1"

    for forged in [board, *binary, *radix4, *hark, arkoor]:
        assert_anchor_on_chain(bitcoind, forged)
        if isinstance(forged.vtxo.policy, ServerHtlcSendPolicy | ServerHtlcRecvPolicy):
            assert forged.payment_hash == forged.vtxo.policy.payment_hash
        else:
            assert forged.payment_preimage is None
    # One round, one anchor; leaves share their ancestors, and leaf 6's node tx pays 200 sat to leaf 7.
    assert len({v.vtxo.anchor_point for v in binary}) == 1
    chains = [build_exit_chain(v.vtxo).txs for v in binary]
    assert chains[0][0].txid == chains[7][0].txid and chains[0][2].txid == chains[1][2].txid
    assert chains[0][3].txid != chains[1][3].txid
    assert chains[6][2].item.other_outputs[0].value == 200


def test_a_board_needs_the_users_secret(forge: Forge) -> None:
    bare = UserKey(pubkey_from_seckey(os.urandom(32)))
    with pytest.raises(ForgeError, match=bare.pubkey.hex()):
        forge.board(10_000, bare)


# -- REST import -------------------------------------------------------------------------------------


def test_forged_vtxos_import_over_rest_and_list(daemon: DaemonProcess, forge: Forge) -> None:
    keychain = VtxoKeychain.from_mnemonic((daemon.datadir / "mnemonic").read_text().strip())
    mine = [UserKey.from_secret(keychain.seckey(0)), UserKey(keychain.pubkey(1)), UserKey(keychain.pubkey(7))]
    board = forge.board(12_345, mine[0])
    tree = forge.tree(
        [
            LeafSpec(10_000, mine[1]),
            LeafSpec(11_000, policy_type=PolicyType.SERVER_HTLC_SEND),
            LeafSpec(12_000, mine[1], PolicyType.SERVER_HTLC_RECV),
            LeafSpec(200),
            LeafSpec(13_000),
        ]
    )
    hark = forge.tree([LeafSpec(9_000), LeafSpec(9_500)], hark=True)
    arkoor = forge.arkoor_chain(7_000, mine[2])
    forged = [board, *tree, *hark, arkoor]
    held = {user.pubkey for user in mine}

    status, imported = daemon.request(
        "POST", "/api/v1/wallet/import-vtxo", {"vtxos": [f.hex for f in forged]}
    )
    assert status == 200, imported
    for info, f in zip(imported, forged, strict=True):
        vtxo = f.vtxo
        assert info == {
            "id": str(vtxo.id),
            "amount_sat": vtxo.amount,
            "policy_type": vtxo.policy.kind,
            "user_pubkey": f.user.pubkey.hex(),
            "server_pubkey": forge.server_pubkey.hex(),
            "expiry_height": vtxo.expiry_height,
            "exit_delta": DEFAULT_EXIT_DELTA,
            "chain_anchor": str(vtxo.anchor_point),
            "exit_depth": vtxo.exit_depth,
            "state": {"type": "spendable"},
            # exitd's extras, which barkd's WalletVtxoInfo (no additionalProperties: false) allows.
            "key_held": f.user.pubkey in held,
            "source": "import",
            "protected": False,
            "seen": None,
            "gone_at": None,
        }
        assert_valid(info, "WalletVtxoInfo")
    assert sum(info["key_held"] for info in imported) == 4
    assert {i["policy_type"] for i in imported} == {"pubkey", "server-htlc-send-v1", "server-htlc-receive-v1"}
    status, listed = daemon.request("GET", "/api/v1/wallet/vtxos")
    assert status == 200 and sorted(listed, key=lambda i: i["id"]) == sorted(imported, key=lambda i: i["id"])
    status, body = daemon.request("GET", f"/api/v1/wallet/vtxos/{arkoor.id}/encoded")
    assert status == 200 and body == {"encoded": arkoor.hex}


def test_import_refuses_an_anchor_of_another_value_or_script(daemon: DaemonProcess, forge: Forge) -> None:
    board = forge.board(10_000)
    anchor = board.vtxo.anchor_point
    # Re-signed against the same on-chain output: the chain now spends 9330 sat, not 10330.
    other_value = forge.sign(replace(board.vtxo, amount=9_000))
    # Another user's board: the same value, but MuSig(other, server) is not the funding output's key.
    other_script = forge.sign(replace(forge.board(10_000).vtxo, anchor_point=anchor))
    for vtxo, spends in [(other_value, "spends 9330 sat"), (other_script, "spends 10330 sat")]:
        assert vtxo.anchor_point == anchor
        status, body = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [vtxo.encode().hex()]})
        assert status == 400, body
        assert f"vtxos[0]: chain anchor {anchor} on chain is 10330 sat" in body["message"]
        assert spends in body["message"]
    assert daemon.request("GET", "/api/v1/wallet/vtxos") == (200, [])


# -- exits on chain ----------------------------------------------------------------------------------


def test_board_exits(bitcoind: RegtestNode, forge: Forge) -> None:
    board = forge.board(10_000)
    assert exit_level_by_level(bitcoind, forge, board.vtxo) == 1
    assert_vtxo_output_on_chain(bitcoind, board.vtxo)


def test_tree_leaf_exits_and_siblings_find_their_shared_ancestors_confirmed(
    bitcoind: RegtestNode, forge: Forge
) -> None:
    policies = [PolicyType.PUBKEY, PolicyType.SERVER_HTLC_SEND, PolicyType.SERVER_HTLC_RECV]
    leaves = forge.tree([LeafSpec(20_000 + i, policy_type=policies[i % 3]) for i in range(8)], arity=2)
    chains = [build_exit_chain(leaf.vtxo).txs for leaf in leaves]
    assert all(len(txs) == 4 for txs in chains)

    assert exit_level_by_level(bitcoind, forge, leaves[0].vtxo) == 4
    assert_vtxo_output_on_chain(bitcoind, leaves[0].vtxo)
    # Leaf 1 shares every node tx with leaf 0, leaf 2 the top two, leaf 4 the root only.
    for sibling, shared in [(1, 3), (2, 2), (4, 1)]:
        assert [confirmations(bitcoind, t.txid) > 0 for t in chains[sibling]] == [True] * shared + [False] * (
            4 - shared
        )
    assert exit_level_by_level(bitcoind, forge, leaves[1].vtxo) == 1
    assert exit_level_by_level(bitcoind, forge, leaves[4].vtxo) == 3
    for i in (1, 4):
        assert_vtxo_output_on_chain(bitcoind, leaves[i].vtxo)


def test_hark_leaf_exits_with_its_unlock_preimage(bitcoind: RegtestNode, forge: Forge) -> None:
    leaves = forge.tree([LeafSpec(15_000), LeafSpec(16_000), LeafSpec(17_000)], hark=True)
    assert exit_level_by_level(bitcoind, forge, leaves[2].vtxo) == 2
    assert_vtxo_output_on_chain(bitcoind, leaves[2].vtxo)


def test_arkoor_chain_exits_through_its_checkpoints(bitcoind: RegtestNode, forge: Forge) -> None:
    arkoor = forge.arkoor_chain(10_000)
    assert exit_level_by_level(bitcoind, forge, arkoor.vtxo) == 5
    assert_vtxo_output_on_chain(bitcoind, arkoor.vtxo)


def test_a_sub_dust_sibling_makes_its_tx_unrelayable(bitcoind: RegtestNode, forge: Forge) -> None:
    """Core relays one dust output per tx at most (here the zero-value P2A), and only when the CPFP child
    spends it: a node tx paying 200 sat to a sibling cannot be broadcast, whichever leaf exits."""
    leaves = forge.tree([LeafSpec(10_000), LeafSpec(200)])
    node_tx = build_exit_chain(leaves[0].vtxo).txs[0].tx
    child = forge.cpfp_child(node_tx, FEE_RATE)
    answer = bitcoind.rpc("submitpackage", [node_tx.serialize().hex(), child.serialize().hex()])
    assert answer["package_msg"] != "success"
    assert answer["tx-results"][b2lx(node_tx.GetHash())]["error"] == "dust"  # keyed by wtxid
    assert confirmations(bitcoind, node_tx.GetTxid()) == 0
