"""The on-chain wallet in-process against the session's regtest bitcoind: tracking through bitcoind's
watch-only wallet, CPFP children accepted by `submitpackage`, and coin reservations that hold across
builders and restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bitcoin.core import (
    CMutableTransaction,
    CMutableTxIn,
    CMutableTxOut,
    COutPoint,
    CScript,
    CTransaction,
    b2lx,
    lx,
)
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.ark.encoding import OutPoint
from exitd.ark.script import P2A_SCRIPT
from exitd.chain.fees import FeeEstimator, btc_to_sat, fee_at_rate
from exitd.chain.rpc import BitcoinRpc, RpcCredentials
from exitd.regtest.node import MINER_WALLET, RegtestNode
from exitd.store.db import Store, upgrade
from exitd.store.leader import take_term
from exitd.store.wallet import add_reservations, list_reservations, unsettled_splits
from exitd.wallet.address import decode_address, script_to_address
from exitd.wallet.builder import Replacing
from exitd.wallet.errors import InsufficientFunds, WalletMismatch
from exitd.wallet.keys import Keychain
from exitd.wallet.onchain import CpfpChild, CpfpRequest, OnchainWallet
from exitd.wallet.planner import PlannedTx
from exitd.wallet.seed import WalletSeed
from tests.support.wallet import ABANDON_ABOUT

pytestmark = pytest.mark.bitcoind

# BIP86 m/86'/1'/0'/0/0 of ABANDON_ABOUT, as a regtest address.
ABANDON_ABOUT_FIRST_REGTEST = "bcrt1p8wpt9v4frpf3tkn0srd97pksgsxc5hs52lafxwru9kgeephvs7rqjeprhg"

WalletFactory = Callable[[], OnchainWallet]


@pytest.fixture
async def rpc(bitcoind: RegtestNode) -> AsyncIterator[BitcoinRpc]:
    client = BitcoinRpc(bitcoind.rpc_url, RpcCredentials(cookie_file=bitcoind.cookie_file))
    yield client
    await client.close()


@pytest.fixture
async def open_wallet(
    tmp_path: Path, rpc: BitcoinRpc, database_url: str
) -> AsyncIterator[Callable[..., OnchainWallet]]:
    """Opens the datadir's wallet, each time on a Store of its own: a second call is a restart. Its coin
    reservations and splits are stored in SQLite, then in PostgreSQL (database_url)."""
    upgrade(database_url)
    stores: list[Store] = [Store(database_url)]
    # On PostgreSQL only a leader may spend: the wallet's daemon leads (one term for all its restarts).
    term = await take_term(stores[0], "test:1", "") if stores[0].shared else None

    def open_(mnemonic: str | None = None, wallet_name: str = "") -> OnchainWallet:
        seed = WalletSeed(tmp_path / "mnemonic")
        if not seed.exists:
            seed.create(mnemonic)
        stores.append(Store(database_url))
        stores[-1].term = term
        return OnchainWallet(rpc, stores[-1], FeeEstimator(rpc, 2000), seed, "regtest", wallet_name)

    yield open_
    for store in stores:
        await store.close()


async def fund(node: RegtestNode, wallet: OnchainWallet, *btc: str) -> None:
    """One confirmed coin per amount."""
    for amount in btc:
        node.send(await wallet.next_address(), amount)
    node.mine(1)
    await wallet.sync()
    await until(lambda: confirmed_count(wallet, len(btc)))


async def confirmed_count(wallet: OnchainWallet, n: int) -> bool:
    return len([c for c in await wallet.list_unspent() if c.confirmed]) >= n


async def build_child(
    wallet: OnchainWallet,
    session: AsyncSession,
    parent: CTransaction,
    rate: int,
    replacing: Replacing | None = None,
) -> CpfpChild:
    (child,) = await wallet.build_cpfp_children(
        session, [CpfpRequest(parent, b2lx(parent.GetTxid()), rate, replacing=replacing)]
    )
    if isinstance(child, InsufficientFunds):
        raise child
    return child


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """bitcoind tells its wallets about blocks and mempool txs asynchronously."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "wallet did not catch up"
        await asyncio.sleep(0.05)


def zero_fee_parent(node: RegtestNode, nth: int = 0) -> CTransaction:
    """A TRUC tx paying a miner coin (the nth it lists) back to the miner in full, with a 0-value P2A anchor
    last: the shape of a bark exit tx, which relays only in a package with a child that pays for both. Make
    it after funding: a later send from the miner wallet may spend its coin."""

    def big_coins() -> list[dict[str, Any]]:
        listed = node.rpc("listunspent", 1, 9_999_999, [], True, wallet=MINER_WALLET)
        return [u for u in listed if Decimal(u["amount"]) >= 1 and u["spendable"]]

    while len(utxos := big_coins()) <= nth:
        node.mine(1)  # each block matures one more coinbase (a session's node starts with few)
    utxo = utxos[nth]
    tx = CMutableTransaction(
        [CMutableTxIn(COutPoint(lx(utxo["txid"]), utxo["vout"]))],
        [
            CMutableTxOut(
                btc_to_sat(utxo["amount"]), CScript(decode_address(node.miner_address(), "regtest"))
            ),
            CMutableTxOut(0, CScript(P2A_SCRIPT)),
        ],
        nVersion=3,
    )
    signed = node.rpc("signrawtransactionwithwallet", tx.serialize().hex(), wallet=MINER_WALLET)
    assert signed["complete"]
    return CTransaction.deserialize(bytes.fromhex(signed["hex"]))


async def test_bip86_addresses_and_a_restored_wallet_finds_its_coins(
    bitcoind: RegtestNode, open_wallet: Callable[..., OnchainWallet]
) -> None:
    """BIP86's vector mnemonic gives its m/86'/1'/0'/0/0 address from bitcoind; coins paid to the wallet
    before it was set up are found by the rescan, and the next address skips the used one."""
    wallet = open_wallet(ABANDON_ABOUT, f"exitd-test-{uuid.uuid4().hex[:8]}")
    first = script_to_address(wallet.account.script_pubkey(Keychain.EXTERNAL, 0), "regtest")
    assert first == ABANDON_ABOUT_FIRST_REGTEST
    txid = bitcoind.send(first, "0.001")
    bitcoind.mine(1)
    await wallet.setup()
    await wallet.sync()
    # The session's chain may hold this address's coins of an earlier run (the other backend's).
    found = [c for c in await wallet.list_unspent() if str(c.outpoint).startswith(txid)]
    assert [(c.keychain, c.index, c.value) for c in found] == [(Keychain.EXTERNAL, 0, 100_000)]
    second = await wallet.next_address()
    assert second == script_to_address(wallet.account.script_pubkey(Keychain.EXTERNAL, 1), "regtest")
    assert wallet.fingerprint == "73c5da0a"


async def test_children_built_concurrently_never_share_a_coin(
    bitcoind: RegtestNode, open_wallet: Callable[..., OnchainWallet]
) -> None:
    wallet = open_wallet()
    await fund(bitcoind, wallet, "0.001", "0.001")
    parents = [zero_fee_parent(bitcoind) for _ in range(3)]

    async def build(parent: CTransaction) -> set[str]:
        async with wallet.store.session(fenced=True) as session:
            child = await build_child(wallet, session, parent, 2_000)
            await asyncio.sleep(0.1)  # the other builder runs while this one has not committed
            return {str(outpoint) for outpoint in child.inputs[1:]}

    first, second = await asyncio.gather(build(parents[0]), build(parents[1]))
    assert len(first) == len(second) == 1 and not first & second
    with pytest.raises(InsufficientFunds) as short:
        await build(parents[2])
    assert short.value.available == 0
    async with wallet.store.session(fenced=True) as session:
        assert {f"{r.txid}:{r.vout}" for r in await list_reservations(session)} == first | second


async def test_one_batch_builds_many_children_from_one_listing_without_sharing_a_coin(
    bitcoind: RegtestNode, open_wallet: Callable[..., OnchainWallet]
) -> None:
    """A cycle that pays for many exit txs asks the wallet once: two round trips (the coins, then the change
    addresses of the children it could plan) whatever the number of children, each child on coins of its
    own, and the one the coins do not cover reported, not raised."""
    wallet = open_wallet()
    await fund(bitcoind, wallet, "0.001", "0.001")
    parents = [zero_fee_parent(bitcoind, nth) for nth in range(3)]
    before = wallet.rpc.round_trips
    async with wallet.store.session(fenced=True) as session:
        built = await wallet.build_cpfp_children(
            session, [CpfpRequest(p, b2lx(p.GetTxid()), 2_000) for p in parents]
        )
    assert wallet.rpc.round_trips - before == 2
    first, second, third = built
    assert isinstance(first, CpfpChild) and isinstance(second, CpfpChild)
    assert isinstance(third, InsufficientFunds) and third.available == 0
    assert not set(first.inputs[1:]) & set(second.inputs[1:])
    assert first.tx.vout[0].scriptPubKey != second.tx.vout[0].scriptPubKey  # a change address each
    async with wallet.store.session(fenced=True) as session:
        reserved = {(r.txid, r.vout, r.reserved_by) for r in await list_reservations(session)}
    assert reserved == {
        (o.txid_hex, o.vout, child.txid) for child in (first, second) for o in child.inputs[1:]
    }
    for parent, child in zip(parents, (first, second), strict=False):
        answer = bitcoind.rpc("submitpackage", [parent.serialize().hex(), child.tx.serialize().hex()])
        assert answer["package_msg"] == "success", answer


async def test_change_fetched_between_blocks_serves_the_next_children_without_a_round_trip(
    bitcoind: RegtestNode, open_wallet: Callable[..., OnchainWallet]
) -> None:
    """prepare_change fetches change scripts ahead only after one was used (restarts forget unused ones:
    their gaps must not add up), never above what was asked, and the next children take them oldest first:
    their build lists the coins and asks bitcoind for nothing else."""
    wallet = open_wallet()
    await fund(bitcoind, wallet, "0.001", "0.001", "0.001")
    assert await wallet.prepare_change(5) == 0  # nothing used since start
    parents = [zero_fee_parent(bitcoind, nth) for nth in range(3)]
    async with wallet.store.session(fenced=True) as session:
        await build_child(wallet, session, parents[0], 2_000)
    before = wallet.rpc.round_trips
    assert await wallet.prepare_change(2) == 2
    assert wallet.rpc.round_trips == before + 2  # the key lookahead, then the scripts
    assert await wallet.prepare_change(2) == 0  # as many as asked are there already
    reserved = list(wallet.change.reserve)
    before = wallet.rpc.round_trips
    async with wallet.store.session(fenced=True) as session:
        built = await wallet.build_cpfp_children(
            session, [CpfpRequest(p, b2lx(p.GetTxid()), 2_000) for p in parents[1:]]
        )
    assert wallet.rpc.round_trips == before + 1  # the coin listing only
    assert [
        bytes(child.tx.vout[0].scriptPubKey) for child in built if isinstance(child, CpfpChild)
    ] == reserved
    for script in reserved:
        info = bitcoind.rpc(
            "getaddressinfo", script_to_address(script, "regtest"), wallet=wallet.bitcoind_wallet
        )
        assert info["ismine"] and info["ischange"], info
    for parent, child in zip(parents[1:], built, strict=True):
        assert isinstance(child, CpfpChild)
        answer = bitcoind.rpc("submitpackage", [parent.serialize().hex(), child.tx.serialize().hex()])
        assert answer["package_msg"] == "success", answer


async def test_children_built_right_after_the_funding_plan_take_its_coin_listing(
    bitcoind: RegtestNode, open_wallet: Callable[..., OnchainWallet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle lists the wallet's coins once: the funding plan's listing is handed to the children built
    right after it, once; a spend of the wallet between them, or age, makes them list afresh."""
    wallet = open_wallet()
    await fund(bitcoind, wallet, *["0.001"] * 5)
    parents = [zero_fee_parent(bitcoind, nth) for nth in range(4)]
    planned = [PlannedTx(b2lx(p.GetTxid()), "ff" * 32, 150, 2_000, False) for p in parents]

    async def build_round_trips(parent: CTransaction) -> int:
        before = wallet.rpc.round_trips
        async with wallet.store.session(fenced=True) as session:
            await build_child(wallet, session, parent, 2_000)
        return wallet.rpc.round_trips - before

    assert (await wallet.ensure_funding(planned)).outlook.split_txid is None  # a coin each: no split
    assert await build_round_trips(parents[0]) == 1  # its change address only
    assert await build_round_trips(parents[1]) == 2  # the listing was taken: listed again
    await wallet.ensure_funding(planned[2:])
    await wallet.send(bitcoind.miner_address(), 20_000)
    assert await build_round_trips(parents[2]) == 2  # the send spent coins: listed again
    monkeypatch.setattr("exitd.wallet.listing.LISTING_HANDOFF_SECONDS", 0.0)
    await wallet.ensure_funding(planned[3:])
    assert await build_round_trips(parents[3]) == 2  # too old to be taken


async def test_reservation_survives_a_restart_and_is_released_for_an_abandoned_child(
    bitcoind: RegtestNode, open_wallet: Callable[..., OnchainWallet]
) -> None:
    wallet = open_wallet()
    await fund(bitcoind, wallet, "0.001")
    parent = zero_fee_parent(bitcoind)
    async with wallet.store.session(fenced=True) as session:
        child = await build_child(wallet, session, parent, 2_000)
    await wallet.store.close()

    restarted = open_wallet()
    with pytest.raises(InsufficientFunds):
        async with restarted.store.session(fenced=True) as session:
            await build_child(restarted, session, parent, 2_000)
    async with restarted.store.session(fenced=True) as session:
        await restarted.release_reservations(session, child.txid)
    async with restarted.store.session(fenced=True) as session:
        rebuilt = await build_child(restarted, session, parent, 2_000)
    assert rebuilt.inputs[1:] == child.inputs[1:]


async def test_child_and_zero_fee_parent_are_accepted_at_the_target_rate_and_replaced(
    bitcoind: RegtestNode, open_wallet: Callable[..., OnchainWallet]
) -> None:
    wallet = open_wallet()
    await fund(bitcoind, wallet, "0.001", "0.002")
    parent = zero_fee_parent(bitcoind)
    async with wallet.store.session(fenced=True) as session:
        child = await build_child(wallet, session, parent, 5_000)
    answer = bitcoind.rpc("submitpackage", [parent.serialize().hex(), child.tx.serialize().hex()])
    assert answer["package_msg"] == "success", answer
    effective = {btc_to_sat(r["fees"]["effective-feerate"]) for r in answer["tx-results"].values()}
    assert len(effective) == 1 and abs(effective.pop() - 5_000) < 1_000
    assert child.package_rate >= 5_000 and child.fee * 1000 // child.package_vsize == child.package_rate

    # A replacement (package RBF on the same anchor) at the same target rate pays the old package fee plus
    # the incremental relay fee the node asks, no more: the node accepts it.
    relay = await wallet.fees.relay()
    assert relay.incremental == btc_to_sat(bitcoind.rpc("getnetworkinfo")["incrementalfee"])
    async with wallet.store.session(fenced=True) as session:
        replaced = Replacing(child.fee, relay.incremental)
        replacement = await build_child(wallet, session, parent, 5_000, replaced)
    assert not set(replacement.inputs[1:]) & set(child.inputs[1:])
    assert replacement.fee == child.fee + fee_at_rate(relay.incremental, replacement.package_vsize)
    answer = bitcoind.rpc("submitpackage", [parent.serialize().hex(), replacement.tx.serialize().hex()])
    assert answer["package_msg"] == "success" and answer["replaced-transactions"] == [child.txid], answer
    async with wallet.store.session(fenced=True) as session:
        await wallet.release_reservations(session, child.txid)
    # bitcoind's wallet, told the replaced child is abandoned, lists its coin as unspent again.
    lost = set(child.inputs[1:])
    await until(lambda: coins_listed(wallet, lost))

    bitcoind.mine(1)
    await wallet.sync()
    async with wallet.store.session(fenced=True) as session:
        assert await list_reservations(session) == []


async def coins_listed(wallet: OnchainWallet, outpoints: set[OutPoint]) -> bool:
    return outpoints <= {c.outpoint for c in await wallet.list_unspent()}


async def test_sync_forgets_sends_that_never_reached_bitcoind(
    bitcoind: RegtestNode, open_wallet: Callable[..., OnchainWallet]
) -> None:
    """A crash between storing a send's reservation and broadcasting it leaves a reservation of a tx no one
    has: sync frees the coin. A CPFP child's reservation is the engine's to release, and stays."""
    wallet = open_wallet()
    await fund(bitcoind, wallet, "0.001", "0.001")
    first, second = (c.outpoint for c in await wallet.list_unspent())
    async with wallet.store.session(fenced=True) as session:
        add_reservations(session, [first], "11" * 32, "send")
        add_reservations(session, [second], "22" * 32, "cpfp")
    await wallet.sync()
    async with wallet.store.session(fenced=True) as session:
        assert [(r.txid, r.vout, r.purpose) for r in await list_reservations(session)] == [
            (second.txid_hex, second.vout, "cpfp")
        ]


async def test_a_wallet_of_another_mnemonic_is_refused(
    tmp_path: Path, rpc: BitcoinRpc, open_wallet: Callable[..., OnchainWallet]
) -> None:
    name = f"exitd-test-{uuid.uuid4().hex[:8]}"
    await open_wallet(ABANDON_ABOUT, name).setup()

    # Another datadir pointed at the same bitcoind wallet would list coins it cannot sign for.
    other_url = f"sqlite+aiosqlite:///{tmp_path / 'other.sqlite3'}"
    upgrade(other_url)
    other_seed = WalletSeed(tmp_path / "other-mnemonic")
    other_seed.create()
    other_store = Store(other_url)
    other = OnchainWallet(rpc, other_store, FeeEstimator(rpc, 2000), other_seed, "regtest", name)
    with pytest.raises(WalletMismatch, match=f"bitcoind wallet '{name}' watches descriptors of another"):
        await other.setup()
    await other_store.close()

    # The datadir's mnemonic swapped under its database, whose reservations belong to the first wallet.
    (tmp_path / "mnemonic").unlink()
    with pytest.raises(WalletMismatch, match="this database belongs to wallet 73c5da0a"):
        await open_wallet().setup()


class Killed(BaseException):
    """The process dying at this instant (nothing after it runs)."""


async def test_a_split_stored_but_not_broadcast_is_sent_after_a_restart_not_made_again(
    bitcoind: RegtestNode, open_wallet: Callable[..., OnchainWallet], monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet = open_wallet()
    await fund(bitcoind, wallet, "0.01")
    # Three exits of one level ready now: with one coin, a split saves a block.
    txs = [PlannedTx(f"{n:02x}" * 32, "ff" * 32, 150, 2_000, False) for n in range(3)]

    async def killed(*_: object) -> str:
        raise Killed()

    monkeypatch.setattr("exitd.wallet.funding.send_raw_transaction", killed)
    with pytest.raises(Killed):
        await wallet.ensure_funding(txs)
    monkeypatch.undo()
    async with wallet.store.session(fenced=True) as session:
        ((stored, status),) = [(r.txid, r.status) for r in await unsettled_splits(session)]
    assert status == "stored" and stored not in bitcoind.rpc("getrawmempool")
    await wallet.store.close()

    restarted = open_wallet()
    outlook = (await restarted.ensure_funding(txs)).outlook
    assert outlook.split_txid == stored and stored in bitcoind.rpc("getrawmempool")
    assert outlook.coins_arriving >= 3 and outlook.extra_blocks == 1
    async with restarted.store.session(fenced=True) as session:
        assert [(r.txid, r.status) for r in await unsettled_splits(session)] == [(stored, "broadcast")]
        assert {r.reserved_by for r in await list_reservations(session)} == {stored}
