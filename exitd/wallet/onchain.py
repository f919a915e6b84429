"""The on-chain wallet: the BIP86 coins of the datadir's mnemonic, which pay every CPFP child.

bitcoind does the scanning, in a watch-only wallet holding the account's descriptors
(exitd/wallet/watchonly.py); exitd chooses coins, builds and signs.

What bitcoind cannot know is which coins exitd has promised to transactions that are not confirmed, or not
even broadcast yet (a CPFP child is stored before it is broadcast). Those are reserved in the store, in the
same database transaction as what spends them, and every builder skips them; so two builders, or one on
each side of a restart, never pick the same coin.

Funding ahead (exitd/wallet/funding.py): every cycle, before any child chooses its coin, the engine hands
the exit txs in flight to ensure_funding, which splits a coin into the coins the next blocks need when
that saves blocks, and answers each tx's floor, which the engine puts in that tx's CpfpRequest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import sqlalchemy
from bitcoin.core import CTransaction, b2lx
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.ark.encoding import OutPoint, TxOut
from exitd.ark.weight import tx_vsize
from exitd.chain.broadcast import send_raw_transaction
from exitd.chain.fees import FeeEstimator, Speed, btc_to_sat
from exitd.chain.rpc import (
    BitcoinRpc,
    RpcError,
    RpcInvalidAddressOrKey,
)
from exitd.chain.view import BlockRef
from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.wallet import (
    add_reservations,
    delete_reservations,
    delete_reservations_by,
    list_reservations,
    reserved_outpoints,
)
from exitd.wallet.address import decode_address
from exitd.wallet.builder import Draft, Replacing, plan_cpfp_child, plan_drain, plan_payment, sign
from exitd.wallet.change import ChangeScripts
from exitd.wallet.coinselection import Coin, coin_order
from exitd.wallet.errors import InsufficientFunds
from exitd.wallet.funding import FundingAhead
from exitd.wallet.keys import Bip86Account
from exitd.wallet.listing import CoinListing
from exitd.wallet.planner import SIZING_SPK, FundingOutlook, FundingPlan, PlannedTx
from exitd.wallet.seed import WalletSeed
from exitd.wallet.watchonly import WatchOnlyWallet

log = get_logger("wallet")

# Reservations of sends: the wallet releases them itself when bitcoind never saw the send (a crash between
# storing and broadcasting). Others (a CPFP child's) are released by whoever stored the spending tx.
SEND_PURPOSE = "send"
# bitcoind processes blocks for its wallets asynchronously; sync waits this long for it to catch up.
WALLET_CATCH_UP_SECONDS = 10.0


@dataclass(frozen=True)
class OnchainBalance:
    """barkd's OnchainBalance (BDK's Balance), in sat."""

    confirmed: int
    trusted_pending: int
    untrusted_pending: int
    immature: int

    @property
    def trusted_spendable(self) -> int:
        """What can be spent without trusting anyone else not to double-spend it."""
        return self.confirmed + self.trusted_pending

    @property
    def total(self) -> int:
        return self.confirmed + self.trusted_pending + self.untrusted_pending + self.immature


@dataclass(frozen=True)
class CpfpChild:
    """A signed CPFP child, ready to be stored with its reservations and then broadcast with its parent."""

    tx: CTransaction
    txid: str
    fee: int
    vsize: int
    package_vsize: int
    # sat/kvB, rounded down (as bitcoind's CFeeRate): the package never pays less than this.
    package_rate: int
    # Every outpoint the child spends: the parent's anchor first, then the wallet coins.
    inputs: tuple[OutPoint, ...]


@dataclass(frozen=True)
class CpfpRequest:
    """A CPFP child to build: for `parent` (whose txid is `parent_txid`), paying `target_rate` (sat/kvB) for
    the package, from a single coin worth `floor` if there is one (the funding plan's coin for it); when it
    replaces a package, at least what that paid plus the incremental relay fee."""

    parent: CTransaction
    parent_txid: str
    target_rate: int
    floor: int = 0
    replacing: Replacing | None = None


def _cpfp_child(parent: CTransaction, draft: Draft, tx: CTransaction) -> CpfpChild:
    child_vsize = tx_vsize(tx)
    package_vsize = tx_vsize(parent) + child_vsize
    return CpfpChild(
        tx=tx,
        txid=b2lx(tx.GetTxid()),
        fee=draft.fee,
        vsize=child_vsize,
        package_vsize=package_vsize,
        package_rate=draft.fee * 1000 // package_vsize,
        inputs=tuple(OutPoint(txin.prevout.hash, txin.prevout.n) for txin in tx.vin),
    )


@dataclass(frozen=True)
class WalletTx:
    """A transaction touching the wallet: what it did to the balance (sat, fee included), its fee when the
    wallet sent it (bitcoind's count: outputs less the wallet's inputs), and its block once confirmed."""

    txid: str
    raw: bytes
    balance_change: int
    fee: int | None
    block: BlockRef | None

    @property
    def is_cpfp(self) -> bool:
        """Whether it spends a pay-to-anchor output, as the CPFP child of an exit tx does: the one input a
        standard tx spends with neither a scriptSig nor a witness (the wallet's own coins always sign)."""
        tx = CTransaction.deserialize(self.raw)
        witnesses = list(tx.wit.vtxinwit) + [None] * (len(tx.vin) - len(tx.wit.vtxinwit))
        return any(
            not txin.scriptSig and (wit is None or not wit.scriptWitness.stack)
            for txin, wit in zip(tx.vin, witnesses, strict=True)
        )


class OnchainWallet:
    def __init__(
        self,
        rpc: BitcoinRpc,
        store: Store,
        fees: FeeEstimator,
        seed: WalletSeed,
        network: str,
        wallet_name: str = "",
        birthday_height: int | None = None,
    ) -> None:
        """`seed`, `wallet_name` and `birthday_height` are the watch-only wallet's (WatchOnlyWallet)."""
        self.rpc = rpc
        self.store = store
        self.fees = fees
        self.network = network
        self.watch_only = WatchOnlyWallet(rpc, store, seed, network, wallet_name, birthday_height)
        # Held while coins are chosen and reserved, while a send is broadcast, while sync frees coins, and
        # while change scripts are fetched ahead.
        self._coins_lock = asyncio.Lock()
        # Coins reserved in sessions not committed yet: invisible to other sessions, but taken all the same.
        self._pending: set[OutPoint] = set()
        self.listing = CoinListing(self.watch_only)
        self.change = ChangeScripts(self.watch_only, network, self._coins_lock)
        self.funding = FundingAhead(rpc, store, self.watch_only, self.change, self)

    # Keys and set-up (bitcoind's watch-only wallet, exitd/wallet/watchonly.py).

    @property
    def account(self) -> Bip86Account:
        """The BIP86 account of the mnemonic; NoWallet until a wallet exists."""
        return self.watch_only.account

    @property
    def fingerprint(self) -> str | None:
        """The BIP32 master fingerprint (hex), or None before a wallet exists."""
        return self.watch_only.fingerprint

    @property
    def bitcoind_wallet(self) -> str:
        return self.watch_only.bitcoind_wallet

    async def create(self, mnemonic: str | None = None, birthday_height: int | None = None) -> str:
        """Make the wallet (a new mnemonic, or the given one, restored from `birthday_height`), the same one
        `exitd init` makes, and start using it; returns its fingerprint. WalletExists if there is one."""
        return await self.watch_only.create(mnemonic, birthday_height)

    async def setup(self) -> None:
        """Make bitcoind's watch-only wallet hold this wallet's descriptors (WatchOnlyWallet.setup)."""
        await self.watch_only.setup()

    # Reading.

    async def next_address(self) -> str:
        """A new receive address (bitcoind hands out the next unused index of the receive descriptor)."""
        address = str(await self.watch_only.call("getnewaddress", "", "bech32m"))
        event(log, logging.INFO, "address_issued", address=address)
        return address

    async def list_unspent(self) -> list[Coin]:
        """Every wallet UTXO bitcoind knows, confirmed or not (immature coinbase outputs excepted)."""
        coins, _ = await self.listing.read()
        return coins

    async def balance(self) -> OnchainBalance:
        """Confirmed and pending amounts from the coins; immature ones from bitcoind's balances
        (listunspent leaves coinbase outputs out until they mature)."""
        coins, balances = await self.listing.read()
        return OnchainBalance(
            confirmed=sum(c.value for c in coins if c.confirmed),
            trusted_pending=sum(c.value for c in coins if not c.confirmed and c.trusted),
            untrusted_pending=sum(c.value for c in coins if not c.confirmed and not c.trusted),
            immature=btc_to_sat(balances["mine"]["immature"]),
        )

    async def list_transactions(self) -> list[WalletTx]:
        """Every transaction touching the wallet, oldest first (by block, then by time seen), except those a
        block conflicts with. listsinceblock with change entries is the one listing that includes a CPFP
        child, whose only output is change."""
        listing = await self.watch_only.call("listsinceblock", "", 1, True, False, True)
        entries = sorted(
            (e for e in listing["transactions"] if int(e["confirmations"]) >= 0),
            key=lambda e: (
                "blockheight" not in e,
                e.get("blockheight", 0),
                e.get("blockindex", 0),
                e["time"],
            ),
        )
        txids = list(dict.fromkeys(e["txid"] for e in entries))
        answers = await self.watch_only.batch([("gettransaction", [txid]) for txid in txids])
        txs = []
        for txid, answer in zip(txids, answers, strict=True):
            if isinstance(answer, RpcError):
                raise answer
            fee = -btc_to_sat(answer["fee"]) if "fee" in answer else None
            block = (
                BlockRef(int(answer["blockheight"]), answer["blockhash"]) if "blockhash" in answer else None
            )
            change = btc_to_sat(answer["amount"]) - (fee or 0)
            if fee is not None and fee < 0:
                # Inputs that are not the wallet's paid for part of the outputs: bitcoind's figure is no fee.
                fee = None
            txs.append(WalletTx(txid, bytes.fromhex(answer["hex"]), change, fee, block))
        return txs

    # Coins and reservations.

    async def unpromised(
        self, session: AsyncSession, hand_on: bool = False, take: bool = False
    ) -> tuple[list[Coin], int]:
        """Coins, confirmed or not, that no stored transaction has promised elsewhere, with the height the
        wallet has processed, which their confirmations count from: in one round trip. That height is a
        new tx's locktime (anti fee sniping), never above the tip. `hand_on`, `take`: CoinListing.read's."""
        taken = await reserved_outpoints(session) | self._pending
        coins, balances = await self.listing.read(hand_on, take)
        height = int(balances["lastprocessedblock"]["height"])
        return [c for c in coins if c.outpoint not in taken], height

    async def _spendable(self, session: AsyncSession, take: bool = False) -> tuple[list[Coin], int]:
        """Confirmed coins no stored transaction has promised elsewhere, and the wallet's height (see
        unpromised). Only confirmed ones: a TRUC child may have no unconfirmed ancestor but its parent,
        and sends should not chain on unconfirmed change."""
        coins, height = await self.unpromised(session, take=take)
        return [c for c in coins if c.confirmed], height

    def reserve(self, session: AsyncSession, coins: Iterable[Coin], txid: str, purpose: str) -> None:
        """Reserve `coins` for `txid` in `session`; until it commits they are held back in memory."""
        outpoints = [c.outpoint for c in coins]
        self.listing.forget()
        add_reservations(session, outpoints, txid, purpose)
        self._pending.update(outpoints)

        def settled(_session: object) -> None:
            self._pending.difference_update(outpoints)

        for settling in ("after_commit", "after_rollback"):
            sqlalchemy.event.listen(session.sync_session, settling, settled, once=True)

    async def release_reservations(self, session: AsyncSession, spending_txid: str) -> None:
        """Free the coins `spending_txid` held back (a child that lost or was abandoned). bitcoind's wallet is
        told to abandon it too: a tx it saw that simply left the mempool still counts its inputs as spent."""
        freed = await delete_reservations_by(session, spending_txid)
        try:
            await self.watch_only.call("abandontransaction", spending_txid)
        except RpcInvalidAddressOrKey:
            pass  # never seen by bitcoind, or in the mempool or a block, where nothing is to be abandoned
        except RpcError as e:
            event(log, logging.WARNING, "abandon_failed", txid=spending_txid, error=str(e))
        event(log, logging.INFO, "reservation_released", txid=spending_txid, coins=freed)

    async def prepare_change(self, n: int) -> int:
        """Fetch change scripts ahead for the next `n` children (ChangeScripts.prepare): the engine calls
        this between blocks."""
        return await self.change.prepare(n)

    # Building.

    async def build_cpfp_children(
        self, session: AsyncSession, requests: Sequence[CpfpRequest], purpose: str = "cpfp"
    ) -> list[CpfpChild | InsufficientFunds]:
        """For each request, a signed version-3 child of its parent (a zero-fee TRUC tx whose last output is
        its P2A anchor) paying the request's rate (sat/kvB) for the package of both, and at least what
        the package it replaces paid plus the incremental relay fee when it replaces one; or the
        InsufficientFunds that stopped it. Funded by confirmed, unreserved coins (a single one worth the
        request's floor if there is one), no coin in two children, with one change output back to the
        wallet.

        A cycle that pays for many exit txs at once asks here once: one coin listing and one batch of change
        addresses, whatever the number of children (a round trip or three per child would make a block that
        needs eighty packages cost seconds). The coins are reserved in `session` (not committed): the caller
        stores the children in the same transaction, commits, and only then broadcasts.
        """
        account = self.account
        async with self._coins_lock:
            coins, tip = await self._spendable(session, take=True)
            coins.sort(key=coin_order)  # each child's selection then sorts in one pass
            taken: set[OutPoint] = set()
            drafts: list[Draft | InsufficientFunds] = []
            for r in requests:
                free = [c for c in coins if c.outpoint not in taken]
                try:
                    # Sized with the planner's change script; each child gets its own once planned.
                    draft = plan_cpfp_child(
                        r.parent, free, SIZING_SPK, r.target_rate, r.replacing, tip, r.floor
                    )
                except InsufficientFunds as e:
                    drafts.append(e)
                    continue
                taken.update(c.outpoint for c in draft.coins)
                drafts.append(draft)
            scripts = iter(await self.change.take(sum(isinstance(d, Draft) for d in drafts)))
            results: list[CpfpChild | InsufficientFunds] = []
            for r, planned in zip(requests, drafts, strict=True):
                if isinstance(planned, InsufficientFunds):
                    results.append(planned)
                    continue
                (change,) = planned.outputs
                draft = replace(planned, outputs=(TxOut(change.value, next(scripts)),))
                child = _cpfp_child(r.parent, draft, sign(draft, account))
                self.reserve(session, draft.coins, child.txid, purpose)
                results.append(child)
        for r, result in zip(requests, results, strict=True):
            if isinstance(result, CpfpChild):
                event(
                    log,
                    logging.INFO,
                    "cpfp_child_built",
                    txid=result.txid,
                    parent=r.parent_txid,
                    fee=result.fee,
                    package_rate=result.package_rate,
                    coins=len(result.inputs) - 1,
                )
        return results

    async def send(self, address: str, amount: int, fee_rate: int | None = None) -> str:
        return await self.send_many([(address, amount)], fee_rate)

    async def send_many(self, payments: Sequence[tuple[str, int]], fee_rate: int | None = None) -> str:
        """Pay each (address, amount in sat) in one transaction at `fee_rate` (sat/kvB; default: bitcoind's
        3-block estimate, as barkd); returns the txid once bitcoind accepted it."""
        outputs = [TxOut(amount, decode_address(address, self.network)) for address, amount in payments]
        rate = await self.fees.rate_or_estimate(fee_rate, Speed.REGULAR)
        (change_spk,) = await self.change.take(1)
        return await self._send(lambda coins, tip: plan_payment(coins, outputs, change_spk, rate, tip))

    async def drain(self, address: str, fee_rate: int | None = None) -> str:
        """Send every confirmed, unreserved coin to `address`, less the fee."""
        destination = decode_address(address, self.network)
        rate = await self.fees.rate_or_estimate(fee_rate, Speed.REGULAR)
        return await self._send(lambda coins, tip: plan_drain(coins, destination, rate, tip))

    async def send_fee(self, address: str, amount: int, fee_rate: int | None = None) -> int:
        """The fee a send of `amount` to `address` would pay now, building nothing and reserving nothing."""
        outputs = [TxOut(amount, decode_address(address, self.network))]
        rate = await self.fees.rate_or_estimate(fee_rate, Speed.REGULAR)
        async with self.store.session() as session:
            coins, _ = await self._spendable(session)
        # Sized with the planner's change script: no address is taken from bitcoind.
        return plan_payment(coins, outputs, SIZING_SPK, rate, 0).fee

    async def _send(self, plan: Callable[[list[Coin], int], Draft]) -> str:
        """Build, sign and reserve (committed), then broadcast; a send bitcoind refuses frees its coins."""
        account = self.account
        async with self._coins_lock:
            async with self.store.session(fenced=True) as session:
                draft = plan(*await self._spendable(session))
                tx = sign(draft, account)
                txid = b2lx(tx.GetTxid())
                self.reserve(session, draft.coins, txid, SEND_PURPOSE)
            try:
                await send_raw_transaction(self.rpc, tx.serialize())
            except RpcError as e:
                async with self.store.session() as session:
                    await delete_reservations_by(session, txid)
                event(log, logging.WARNING, "send_rejected", txid=txid, error=str(e))
                raise
        event(log, logging.INFO, "send_broadcast", txid=txid, fee=draft.fee, outputs=len(draft.outputs))
        return txid

    # Funding ahead.

    async def ensure_funding(self, txs: Sequence[PlannedTx]) -> FundingPlan:
        """Plan the coins the exit txs `txs` need and make the split that saves blocks, if any
        (exitd/wallet/funding.py). The engine calls this every cycle before its children choose their
        coins, and asks for each child with the plan's floor."""
        await self._wait_for_wallet_tip()
        split_rate = (await self.fees.rates()).fast
        async with self._coins_lock:
            return await self.funding.ensure(txs, split_rate)

    async def funding_outlook(self, txs: Sequence[PlannedTx]) -> FundingOutlook:
        """The plan for `txs` as ensure_funding would make it (with the split it would make), making
        nothing."""
        return await self.funding.outlook(txs, (await self.fees.rates()).fast)

    # Sync.

    async def sync(self) -> None:
        """Let bitcoind's wallet catch up with its best block, then forget reservations that hold nothing
        back any more: of coins spent in a block, and of sends bitcoind never saw (stored, then a crash
        before the broadcast)."""
        await self._wait_for_wallet_tip()
        async with self._coins_lock, self.store.session() as session:
            rows = await list_reservations(session)
            if not rows:
                return
            utxos = await self.rpc.batch(("gettxout", [r.txid, r.vout, False]) for r in rows)
            spent = set()
            for row, utxo in zip(rows, utxos, strict=True):
                if isinstance(utxo, RpcError):
                    raise utxo
                if utxo is None:
                    spent.add(OutPoint.of(row.txid, row.vout))
            sends = sorted({r.reserved_by for r in rows if r.purpose == SEND_PURPOSE})
            answers = await self.watch_only.batch([("gettransaction", [txid]) for txid in sends])
            unknown = {
                txid for txid, a in zip(sends, answers, strict=True) if isinstance(a, RpcInvalidAddressOrKey)
            }
            await delete_reservations(session, spent)
            for txid in unknown:
                await delete_reservations_by(session, txid)
        if spent or unknown:
            event(log, logging.INFO, "reservations_cleared", spent_coins=len(spent), unsent=len(unknown))

    async def _wait_for_wallet_tip(self) -> None:
        deadline = time.monotonic() + WALLET_CATCH_UP_SECONDS
        while time.monotonic() < deadline:
            best, info = await self.watch_only.batch([("getbestblockhash", []), ("getwalletinfo", [])])
            for answer in (best, info):
                if isinstance(answer, RpcError):
                    raise answer
            if info.get("scanning") or info["lastprocessedblock"]["hash"] == best:
                return
            await asyncio.sleep(0.05)
        event(log, logging.WARNING, "wallet_behind_tip", bitcoind_wallet=self.bitcoind_wallet)
