"""The on-chain wallet without a node: BIP86 keys, dust, coin selection, exact sizes, fees and signatures."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bitcoin.core import CMutableTransaction, CTransaction

from exitd.ark.encoding import OutPoint, TxOut
from exitd.ark.key import schnorr_verify
from exitd.ark.script import p2pkh_script, p2sh_script, p2tr_script, segwit_script
from exitd.ark.sighash import taproot_sighash
from exitd.ark.weight import tx_vsize
from exitd.chain.fees import fee_at_rate
from exitd.wallet.address import script_to_address
from exitd.wallet.builder import (
    Anchor,
    Draft,
    Replacing,
    package_fee,
    plan_cpfp_child,
    plan_drain,
    plan_payment,
    sign,
    wallet_tx_vsize,
)
from exitd.wallet.coinselection import select_coins
from exitd.wallet.errors import AmountBelowDust, InsufficientFunds
from exitd.wallet.keys import Bip86Account, Keychain
from exitd.wallet.mempool_rules import TRUC_CHILD_MAX_VSIZE, dust_threshold
from exitd.wallet.seed import master_fingerprint
from tests.support.wallet import ABANDON_ABOUT, ACCOUNT, DESTINATION, coin, zero_fee_parent


def test_bip86_vector_addresses_and_descriptors() -> None:
    """BIP86's test vector: the first receive and change addresses of `abandon ... about`."""
    mainnet = Bip86Account.from_mnemonic(ABANDON_ABOUT, "mainnet")
    assert script_to_address(mainnet.script_pubkey(Keychain.EXTERNAL, 0), "mainnet") == (
        "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
    )
    assert script_to_address(mainnet.script_pubkey(Keychain.EXTERNAL, 1), "mainnet") == (
        "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh"
    )
    assert script_to_address(mainnet.script_pubkey(Keychain.INTERNAL, 0), "mainnet") == (
        "bc1p3qkhfews2uk44qtvauqyr2ttdsw7svhkl9nkm9s9c3x4ax5h60wqwruhk7"
    )
    assert mainnet.descriptor(Keychain.EXTERNAL) == (
        "tr([73c5da0a/86h/0h/0h]xpub6BgBgsespWvERF3LHQu6CnqdvfEvtMcQjYrcRzx53QJjSxarj2afYWcLteoGVky7D3UKDP9Q"
        "yrLprQ3VCECoY49yfdDEHGCtMMj92pReUsQ/0/*)"
    )
    assert ACCOUNT.descriptor(Keychain.INTERNAL).startswith("tr([73c5da0a/86h/1h/0h]tpub")
    assert ACCOUNT.descriptor(Keychain.INTERNAL).endswith("/1/*)")
    assert master_fingerprint(ABANDON_ABOUT) == "73c5da0a"


def test_locate_reads_key_origins_of_this_account_only() -> None:
    key = "55355ca83c973f1d97ce0e3843c85d78905af16b4dc531bc488e57212d230116"
    assert ACCOUNT.locate(f"tr([73c5da0a/86h/1h/0h/1/7]{key})#5pqv3usz") == (Keychain.INTERNAL, 7)
    assert ACCOUNT.locate(f"tr([73c5da0a/86'/1'/0'/0/0]{key})") == (Keychain.EXTERNAL, 0)
    for other in ("[00000000/86h/1h/0h/0/0]", "[73c5da0a/86h/0h/0h/0/0]", "[73c5da0a/86h/1h/0h/2/0]", ""):
        assert ACCOUNT.locate(f"tr({other}{key})") is None


@pytest.mark.parametrize(
    ("script", "dust"),
    [
        (p2pkh_script(bytes(20)), 546),
        (p2sh_script(bytes(20)), 540),
        (segwit_script(0, bytes(20)), 294),
        (segwit_script(0, bytes(32)), 330),
        (p2tr_script(bytes(32)), 330),
    ],
)
def test_dust_thresholds_are_cores(script: bytes, dust: int) -> None:
    assert dust_threshold(script) == dust


def test_select_coins_prefers_the_smallest_sufficient_coin_then_the_fewest() -> None:
    coins = [coin(10_000, 0), coin(50_000, 1), coin(30_000, 2), coin(20_000, 3)]

    def need(target: int) -> Callable[[int], int]:
        return lambda k: target + 100 * k

    assert select_coins(coins, need(25_000), 10) == [coins[2]]
    assert select_coins(coins, need(60_000), 10) == [coins[1], coins[2]]
    assert select_coins(coins, need(99_000), 10) == [coins[1], coins[2], coins[3]]
    assert select_coins(coins, lambda k: -1, 10) == []
    with pytest.raises(InsufficientFunds) as short:
        select_coins(coins, need(200_000), 10)
    assert (short.value.needed, short.value.available) == (200_400, 110_000)
    with pytest.raises(InsufficientFunds) as capped:
        select_coins(coins, need(60_000), 1)
    assert (capped.value.needed, capped.value.available) == (60_100, 50_000)
    with pytest.raises(InsufficientFunds) as empty:
        select_coins([], need(1_000), 10)
    assert (empty.value.needed, empty.value.available) == (1_100, 0)


@pytest.mark.parametrize(
    ("n_coins", "with_anchor"), [(1, False), (2, False), (5, False), (0, True), (1, True), (3, True)]
)
def test_predicted_vsize_is_the_signed_vsize(n_coins: int, with_anchor: bool) -> None:
    anchor = Anchor(OutPoint(bytes(32), 1), 0) if with_anchor else None
    outputs = (TxOut(1_000, DESTINATION), TxOut(2_000, p2pkh_script(bytes(20))))
    draft = Draft(tuple(coin(10_000, n, n) for n in range(n_coins)), outputs, 3, 100, anchor)
    assert tx_vsize(sign(draft, ACCOUNT)) == wallet_tx_vsize(n_coins, outputs, with_anchor)


def test_signatures_are_bip86_key_path_spends() -> None:
    coins = (coin(60_000, 0, 3), coin(70_000, 1, 4))
    draft = plan_payment(coins, [TxOut(100_000, DESTINATION)], DESTINATION, 2_000, 100)
    tx = sign(draft, ACCOUNT)
    prevouts = draft.prevouts
    for i, txin_witness in enumerate(tx.wit.vtxinwit):
        (signature,) = txin_witness.scriptWitness.stack
        output_key = prevouts[i].script_pubkey[2:]
        assert schnorr_verify(output_key, taproot_sighash(tx, i, prevouts), signature)


def test_payment_change_and_fee() -> None:
    coins = [coin(200_000, 0), coin(1_000_000, 1)]
    draft = plan_payment(coins, [TxOut(150_000, DESTINATION)], p2tr_script(bytes(32)), 2_000, 100)
    assert draft.coins == (coins[0],) and draft.version == 2 and draft.locktime == 100
    assert len(draft.outputs) == 2 and draft.fee == fee_at_rate(2_000, wallet_tx_vsize(1, draft.outputs))
    # A leftover below what a change output and its dust floor cost goes to the fee: no change output.
    exact = 150_000 + fee_at_rate(2_000, wallet_tx_vsize(1, [TxOut(0, DESTINATION)])) + 300
    draft = plan_payment([coin(exact)], [TxOut(150_000, DESTINATION)], DESTINATION, 2_000, 100)
    assert draft.outputs == (TxOut(150_000, DESTINATION),) and draft.fee == exact - 150_000
    with pytest.raises(AmountBelowDust):
        plan_payment(coins, [TxOut(329, DESTINATION)], DESTINATION, 2_000, 100)
    with pytest.raises(InsufficientFunds):
        plan_payment(coins, [TxOut(1_200_000, DESTINATION)], DESTINATION, 2_000, 100)


def test_drain_sends_everything_less_the_fee() -> None:
    coins = [coin(200_000, 0), coin(300_000, 1)]
    draft = plan_drain(coins, DESTINATION, 3_000, 100)
    assert draft.fee == fee_at_rate(3_000, wallet_tx_vsize(2, draft.outputs))
    assert draft.outputs == (TxOut(500_000 - draft.fee, DESTINATION),)
    with pytest.raises(InsufficientFunds):
        plan_drain([coin(400)], DESTINATION, 3_000, 100)


@pytest.mark.parametrize("anchor_value", [0, 240])
def test_cpfp_child_pays_the_package_rate(anchor_value: int) -> None:
    parent = zero_fee_parent(anchor_value)
    coins = [coin(5_000, 0), coin(100_000, 1)]
    draft = plan_cpfp_child(parent, coins, DESTINATION, 25_000, None, 100)
    child = sign(draft, ACCOUNT)
    package_vsize = tx_vsize(parent) + tx_vsize(child)
    assert child.nVersion == 3 and draft.coins == (coins[1],)
    assert draft.anchor is not None and draft.anchor.value == anchor_value
    assert child.vin[0].prevout.hash == parent.GetTxid() and child.vin[0].prevout.n == 1
    assert list(child.wit.vtxinwit[0].scriptWitness.stack) == []
    assert draft.fee == fee_at_rate(25_000, package_vsize)
    assert draft.outputs[0].value == anchor_value + 100_000 - draft.fee
    # Replacing a package that paid 10_000 sat on a node whose incremental relay fee is 100 sat/kvB.
    replaced = Replacing(10_000, 100)
    replacing = plan_cpfp_child(parent, coins, DESTINATION, 1_000, replaced, 100)
    assert replacing.fee == 10_000 + fee_at_rate(100, package_vsize)
    assert package_fee(1_000, package_vsize, replaced) == replacing.fee


def test_cpfp_child_stays_within_the_truc_child_limit() -> None:
    many = [coin(1_000, n, n) for n in range(40)]
    with pytest.raises(InsufficientFunds) as short:
        plan_cpfp_child(zero_fee_parent(), many, DESTINATION, 50_000, None, 100)
    usable = short.value.available // 1_000
    assert wallet_tx_vsize(usable, [TxOut(0, DESTINATION)], True) <= TRUC_CHILD_MAX_VSIZE
    assert wallet_tx_vsize(usable + 1, [TxOut(0, DESTINATION)], True) > TRUC_CHILD_MAX_VSIZE


def test_cpfp_child_needs_a_truc_parent_with_its_anchor_last() -> None:
    parent = zero_fee_parent()
    v2 = CMutableTransaction.from_tx(parent)
    v2.nVersion = 2
    with pytest.raises(ValueError, match="TRUC"):
        plan_cpfp_child(CTransaction.from_tx(v2), [coin(100_000)], DESTINATION, 1_000, None, 100)
    no_anchor = CMutableTransaction.from_tx(parent)
    no_anchor.vout = no_anchor.vout[:1]
    with pytest.raises(ValueError, match="pay-to-anchor"):
        plan_cpfp_child(CTransaction.from_tx(no_anchor), [coin(100_000)], DESTINATION, 1_000, None, 100)
