"""A regtest fee market: exits under congestion, exitd's policy against the anchors' policies, replayed.

bitcoind mines small blocks (-blockmaxweight) and the harness sends, before every block, a load of ordinary
transactions whose rates and volume follow a scenario (quiet, steady, spike, rise, full mempool), so that
blocks are full, bitcoind's fee estimator learns real rates, and in the full scenario the mempool overflows
-maxmempool and its floor rises. The same seed gives the same load.

On that chain, four policies exit the same shapes of VTXOs (boards, shared trees, arkoor chains; loose and
tight deadlines), each its own VTXOs, all started in the same block and competing in the same blocks:
- exitd: the real daemon's engine, one progress cycle per block (its wall time measured);
- barkd: the package at the 1-block estimate, replaced when the estimate rises; no deadline
  (bark-exit-engine.md, "Fee-rate choice");
- lightning labs: the 6-block estimate (floor 2, cap 100 sat/vB), re-bumped every 2 blocks by at least
  1 sat/vB plus the increment, a bump above the cap refused (exit-failure-modes.md);
- lnd: LND's sweeper per level: the deadline split among the levels left, a linear curve from the
  estimate for the blocks available to the level's share of a 50 % budget (fee-bumping-anchors.md 1).
The replayed policies pay from a pool of OP_TRUE coins (no signing, like Core's MiniWallet); exitd from
its own wallet. Every policy's claims go out and confirm on the same market: exitd's from its guard
(auto-claim to its wallet, after each cycle), each replayed policy's as one signed claim of the exits
that became claimable, at its claim rate, sent again at the rate of the moment if the node refused it or
the mempool dropped it. A claim still unconfirmed CLAIM_WAIT blocks after its exit became claimable ends
the run for that exit; its fee counts, and the claims confirmed are reported.

Figures per scenario and policy: exits completed before expiry (of those whose budget allows it), blocks
to claimable, CPFP and claim fees, CPFP fees over the oracle's (the cheapest fees that would have
confirmed every level in time, given each block's lowest included package rate), RBF count, and exitd's
wall time per cycle. A PNG per scenario plots the market against the rate each policy paid.

    BITCOIND=../shared/bin/bitcoind .venv/bin/python bench/fee_market.py [--quick] [--scenarios ...]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitcoin.core import (
    COutPoint,
    CScript,
    CTransaction,
    CTxIn,
    CTxInWitness,
    CTxOut,
    CTxWitness,
    b2lx,
    lx,
)
from bitcoin.core.script import OP_RETURN, CScriptWitness
from harness import fund_wallet, machine, quiet_logs, regtest_node, running_daemon

from exitd.ark.claim import ClaimSigner
from exitd.ark.encoding import OutPoint
from exitd.ark.exit_tx import build_exit_chain
from exitd.ark.policy import UserPolicy
from exitd.ark.weight import tx_vsize
from exitd.chain.fees import PACKAGE_ROOM, btc_to_sat
from exitd.chain.rpc import BitcoinRpc, RpcCredentials, RpcError
from exitd.config import GuardConfig
from exitd.daemon.lifecycle import Daemon
from exitd.engine.claims import ClaimInput, build_claim_tx
from exitd.engine.fee_policy import CHILD_VSIZE_ESTIMATE
from exitd.regtest.forge import DEFAULT_EXIT_DELTA, Forge, ForgedVtxo, LeafSpec, UserKey
from exitd.regtest.node import MINER_WALLET, RegtestNode
from exitd.wallet.address import script_to_address

OP_TRUE_SCRIPT = bytes([0x51])
OP_TRUE_SPK = bytes([0x00, 0x20]) + hashlib.sha256(OP_TRUE_SCRIPT).digest()
BIP125_SEQUENCE = 0xFFFF_FFFD
# The OP_RETURN push that makes an OP_TRUE child weigh what a P2TR key-path child does (609 WU against 610).
P2TR_PAD = 5
SAT = 100_000_000
# Blocks: 120,000 WU less the 8,000 Core reserves = 28,000 vB for transactions.
BLOCK_MAX_WEIGHT = 120_000
BLOCK_VSIZE = (BLOCK_MAX_WEIGHT - 8_000) // 4
# A block this full (of BLOCK_VSIZE) is full: its lowest rate is what it took to get in.
FULL = 0.85
LEAF_AMOUNT = 200_000
POOL_COINS = 6_000
POOL_COIN = 5_000_000  # sat
WARMUP = 45  # blocks of load before the exits start, for the estimator and exitd's memory to learn
LOOSE_SLACK = 144  # guard.slack_blocks' default: the guard starts an exit this far beyond depth + delta
TIGHT_SLACK = 4
EXITD_COINS = 16
# Blocks a claim may stay unconfirmed after its exit became claimable before the run stops waiting for it.
CLAIM_WAIT = 36
# Where the replayed policies' claims pay (a P2TR output).
CLAIM_DESTINATION = bytes([0x51, 0x20]) + bytes(32)
POLICIES = ("exitd", "barkd", "lightning-labs", "lnd")


# The scenarios: for blocks k since the exits started (negative: the warm-up), the load's median rate in
# sat/vB and its volume in blocks' worth.


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: Callable[[int], float]
    volume: float = 1.4
    max_mempool_mb: int = 300
    junk_rate: float = 0.0  # sat/vB of the oversized txs that keep a small mempool full


def _spike(k: int) -> float:
    base = 4.0
    if k < 2 or k >= 22:
        return base
    if k < 7:
        return base * (1 + 9 * (k - 1) / 6)
    if k < 17:
        return base * 10
    return base * (1 + 9 * (22 - k) / 6)


SCENARIOS: dict[str, Scenario] = {
    "quiet": Scenario("quiet", lambda k: 1.0, volume=0.5),
    "steady": Scenario("steady", lambda k: 4.0),
    "spike": Scenario("spike", _spike),
    "rise": Scenario("rise", lambda k: 4.0 + 0.25 * max(0, k)),
    "full": Scenario("full", lambda k: 10.0, max_mempool_mb=5, junk_rate=8.0),
}


# Coins anyone can spend: the load and the replayed policies' CPFP children.


@dataclass(frozen=True)
class Coin:
    txid: str
    vout: int
    value: int


def op_true_witness() -> CTxInWitness:
    return CTxInWitness(CScriptWitness([OP_TRUE_SCRIPT]))


def load_tx(coin: Coin, rate: float, pad: int) -> tuple[str, int, str, int]:
    """A tx of about `pad` + 100 vB from `coin` back to OP_TRUE, paying `rate` sat/vB; its hex, vsize,
    txid and the value of its OP_TRUE output (output 0)."""

    def build(fee: int) -> CTransaction:
        outputs = [
            CTxOut(coin.value - fee, CScript(OP_TRUE_SPK)),
            CTxOut(0, CScript([OP_RETURN, bytes(pad)])),
        ]
        return CTransaction(
            [CTxIn(COutPoint(lx(coin.txid), coin.vout), nSequence=BIP125_SEQUENCE)],
            outputs,
            nVersion=2,
            witness=CTxWitness([op_true_witness()]),
        )

    vsize = tx_vsize(build(0))
    tx = build(math.ceil(rate * vsize))
    return tx.serialize().hex(), vsize, b2lx(tx.GetTxid()), tx.vout[0].nValue


def cpfp_child(parent: CTransaction, coin: Coin, fee: int) -> CTransaction:
    """A TRUC child of an exit tx: its P2A anchor (last output) and an OP_TRUE coin, change to OP_TRUE,
    and an OP_RETURN output that gives it the weight of a child paying from a P2TR wallet (exitd's, bark's):
    an OP_TRUE input is 16 vB lighter than a key-path one, and the policies compare by rate, not by coin."""
    anchor = len(parent.vout) - 1
    value = parent.vout[anchor].nValue + coin.value - fee
    return CTransaction(
        [
            CTxIn(COutPoint(parent.GetTxid(), anchor), nSequence=BIP125_SEQUENCE),
            CTxIn(COutPoint(lx(coin.txid), coin.vout), nSequence=BIP125_SEQUENCE),
        ],
        [CTxOut(value, CScript(OP_TRUE_SPK)), CTxOut(0, CScript([OP_RETURN, bytes(P2TR_PAD)]))],
        nVersion=3,
        witness=CTxWitness([CTxInWitness(CScriptWitness([])), op_true_witness()]),
    )


# What the policies exit.


@dataclass(frozen=True)
class Group:
    """VTXOs of one shape exited together: `kind` board / tree / arkoor, `tight` deadline or loose."""

    kind: str
    depth: int
    tight: bool
    exits: int = 1


GROUPS = (
    Group("board", 1, False),
    Group("board", 1, True),
    Group("tree", 3, False, exits=2),
    Group("tree", 3, True, exits=2),
    Group("arkoor", 5, False),
    Group("arkoor", 5, True),
    Group("arkoor", 3, True),
)
QUICK_GROUPS = (Group("board", 1, True), Group("tree", 3, True, exits=2), Group("arkoor", 3, False))


def forge_group(
    forge: Forge, group: Group, expiry: int, owner: Callable[[], UserKey | None]
) -> list[ForgedVtxo]:
    """The group's VTXOs, each owned by `owner()` (None: a fresh key)."""
    if group.kind == "board":
        return [forge.board(LEAF_AMOUNT, owner(), expiry_height=expiry)]
    if group.kind == "tree":
        specs = [LeafSpec(LEAF_AMOUNT, owner() if i < group.exits else None) for i in range(4)]
        return forge.tree(specs, arity=2, expiry_height=expiry)[: group.exits]
    hops = (group.depth - 1) // 2
    return [forge.arkoor_chain(LEAF_AMOUNT, owner(), hops=hops, expiry_height=expiry)]


@dataclass
class Level:
    """One exit tx as a policy tracks it (shared by the exits of a tree that need it)."""

    txid: str
    tx: CTransaction
    vsize: int
    input_txid: str
    deadline: int  # the last height it may confirm at
    value: int  # sat of the VTXOs that need it
    parent: Level | None = None
    children: list[Level] = field(default_factory=list)
    # A replayed policy's package in the mempool.
    coin: Coin | None = None
    fee: int = 0
    rate: int = 0  # sat/kvB
    broadcast_at: int = 0
    curve: tuple[int, int, int, int] | None = None  # LND: start, end, first height, width
    rbf: int = 0
    # The chain's verdict.
    confirmed_at: int | None = None
    paid: int = 0  # the fee of the child that confirmed it
    paid_rate: int = 0


@dataclass
class ExitRecord:
    vtxo: ForgedVtxo
    group: Group
    levels: list[Level]

    @property
    def expiry(self) -> int:
        return self.vtxo.vtxo.expiry_height

    @property
    def completed_at(self) -> int | None:
        heights = [lv.confirmed_at for lv in self.levels]
        return None if any(h is None for h in heights) else max(h for h in heights if h is not None)

    @property
    def key(self) -> str:
        return str(self.vtxo.id)

    @property
    def claimable_at(self) -> int | None:
        """The first block the claim may enter (the VTXO's CSV from its leaf's confirmation)."""
        done = self.completed_at
        return None if done is None else done + self.vtxo.vtxo.exit_delta

    def levels_left(self) -> int:
        return sum(1 for lv in self.levels if lv.confirmed_at is None)


@dataclass
class Claim:
    """A claim tx of some of a policy's exits, as broadcast."""

    txid: str
    fee: int
    exits: list[str]
    confirmed_at: int | None = None


@dataclass
class Book:
    """A policy's exits, their txs once each, and what it paid."""

    policy: str
    exits: list[ExitRecord] = field(default_factory=list)
    levels: dict[str, Level] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)
    # Per exit: its latest claim's txid, and the height its claim confirmed at.
    claim_of: dict[str, str] = field(default_factory=dict)
    claimed: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    claims_refused: int = 0

    @property
    def claim_fees(self) -> int:
        """The fees of the claims that confirmed, and of each exit's latest claim still unconfirmed."""
        paid = {txid for txid, c in self.claims.items() if c.confirmed_at is not None}
        paid |= {self.claim_of[k] for k in self.claim_of if k not in self.claimed}
        return sum(self.claims[txid].fee for txid in paid)

    def add(self, vtxo: ForgedVtxo, group: Group) -> None:
        chain = build_exit_chain(vtxo.vtxo)
        levels: list[Level] = []
        input_txid = b2lx(vtxo.vtxo.anchor_point.txid)
        parent: Level | None = None
        for exit_tx in chain.txs:
            txid = b2lx(exit_tx.tx.GetTxid())
            level = self.levels.get(txid)
            if level is None:
                level = Level(
                    txid, exit_tx.tx, tx_vsize(exit_tx.tx), input_txid, vtxo.vtxo.expiry_height - 1, 0
                )
                level.parent = parent
                if parent is not None:
                    parent.children.append(level)
                self.levels[txid] = level
            level.deadline = min(level.deadline, vtxo.vtxo.expiry_height - 1)
            level.value += vtxo.vtxo.amount
            levels.append(level)
            input_txid, parent = txid, level
        self.exits.append(ExitRecord(vtxo, group, levels))

    def ready(self) -> list[Level]:
        """Unconfirmed txs whose input is confirmed."""
        return [
            lv
            for lv in self.levels.values()
            if lv.confirmed_at is None and (lv.parent is None or lv.parent.confirmed_at is not None)
        ]

    def rbf_count(self) -> int:
        return sum(lv.rbf for lv in self.levels.values())


# The market as the harness sees it, block by block.


@dataclass
class BlockStats:
    height: int
    lowest: float  # sat/vB: the lowest package rate it included, or the floor when not full
    full: bool
    floor: float  # mempoolminfee before it, sat/vB
    estimate1: float | None
    estimate6: float | None
    next_block: float | None = None  # exitd's N before it (its block template), sat/vB
    recent: float | None = None  # exitd's usual rate


class Market:
    def __init__(self, rpc: BitcoinRpc) -> None:
        self.rpc = rpc
        self._estimates: dict[tuple[int, int], int | None] = {}
        self.floor = 0
        self.incremental = 0

    async def read(self, height: int, targets: Sequence[int]) -> None:
        info = await self.rpc.call("getmempoolinfo")
        self.floor = max(btc_to_sat(info["minrelaytxfee"]), btc_to_sat(info["mempoolminfee"]))
        self.incremental = btc_to_sat(info["incrementalrelayfee"])
        missing = [t for t in targets if (height, t) not in self._estimates]
        answers = await self.rpc.batch(("estimatesmartfee", [t, "economical"]) for t in missing)
        for t, a in zip(missing, answers, strict=True):
            rate = a.get("feerate") if isinstance(a, dict) else None
            self._estimates[(height, t)] = btc_to_sat(rate) if rate is not None else None

    def estimate(self, height: int, target: int) -> int | None:
        return self._estimates.get((height, target))


# The replayed policies: each returns the package rate (sat/kvB) it wants for a level now, or None to
# leave the package as it is; `increment` is what a replacement adds per vbyte.


class Replay:
    name = ""
    increment: int | None = 1000  # sat/kvB; None: the node's
    targets: tuple[int, ...] = ()

    def want(self, level: Level, book: Book, tip: int, market: Market) -> int | None:
        raise NotImplementedError

    def claim(self, tip: int, market: Market) -> int:
        raise NotImplementedError


class Barkd(Replay):
    name = "barkd"
    targets = (1, 3)

    def want(self, level: Level, book: Book, tip: int, market: Market) -> int | None:
        rate = max(market.estimate(tip, 1) or 2000, market.floor)
        return rate if level.coin is None or rate > level.rate else None

    def claim(self, tip: int, market: Market) -> int:
        return max(market.estimate(tip, 3) or 2000, market.floor)


class LightningLabs(Replay):
    name = "lightning-labs"
    targets = (6,)
    FLOOR, CAP = 2000, 100_000

    def want(self, level: Level, book: Book, tip: int, market: Market) -> int | None:
        rate = max(market.estimate(tip, 6) or self.FLOOR, self.FLOOR, market.floor)
        if level.coin is None:
            return min(rate, self.CAP)
        if tip - level.broadcast_at < 2:
            return None
        bumped = max(rate, level.rate + 1000)
        return bumped if bumped <= self.CAP else None  # above the cap: fails closed

    def claim(self, tip: int, market: Market) -> int:
        return max(market.estimate(tip, 6) or self.FLOOR, self.FLOOR, market.floor)


class Lnd(Replay):
    name = "lnd"
    increment = None
    targets = (*range(1, 150), 1008)
    MAX_RATE = 1_000_000  # sat/kvB: LND's default MaxFeeRate, 1,000 sat/vB
    BUDGET_RATIO = 0.5

    def want(self, level: Level, book: Book, tip: int, market: Market) -> int | None:
        package = level.vsize + CHILD_VSIZE_ESTIMATE
        if level.curve is None:
            r = max(e.levels_left() for e in book.exits if level in e.levels)
            width = max(1, (level.deadline - tip) // r)  # the deadline split among the levels left
            spent = sum(lv.paid for lv in book.levels.values())
            budget = max(0, int(level.value * self.BUDGET_RATIO) - spent // max(1, len(book.exits)))
            end = min(budget // r * 1000 // package, self.MAX_RATE)
            start = min(max(market.estimate(tip, min(width, 1008)) or 2000, market.floor), end)
            if width <= 1:
                start = end
            level.curve = (start, end, tip, width)
        start, end, first, width = level.curve
        position = tip - first
        rate = end if position >= width - 1 else start + position * (end - start) // max(1, width - 1)
        return rate if level.coin is None or rate > level.rate else None

    def claim(self, tip: int, market: Market) -> int:
        return max(market.estimate(tip, 1008) or 2000, market.floor)


REPLAYS: dict[str, Replay] = {p.name: p for p in (Barkd(), LightningLabs(), Lnd())}


@dataclass
class Run:
    scenario: Scenario
    seed: int
    node: RegtestNode
    rpc: BitcoinRpc
    daemon: Daemon
    books: dict[str, Book]
    pool: list[Coin]
    start: int = 0
    blocks: list[BlockStats] = field(default_factory=list)
    cycle_seconds: list[float] = field(default_factory=list)
    paid: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # policy: (height, sat/vB)
    market: Market | None = None
    # The load's txs in flight: their OP_TRUE output joins the pool once confirmed.
    load: dict[str, int] = field(default_factory=dict)
    # exitd's next-block rate and its recent median at each tip (sat/kvB).
    exitd_next_block: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)

    # The load.

    async def send_load(self, k: int, rng: random.Random) -> None:
        scenario = self.scenario
        median = scenario.rate(k)
        txs: list[str] = []
        volume = 0
        while volume < scenario.volume * BLOCK_VSIZE:
            rate = max(0.1, median * math.exp(rng.gauss(0, 0.35)))
            pad = rng.choice((150, 500, 1100, 1900))
            raw, vsize, txid, value = load_tx(self.pool.pop(), rate, pad)
            txs.append(raw)
            self.load[txid] = value
            volume += vsize
        if scenario.junk_rate:
            # Oversized txs (no block of BLOCK_VSIZE takes one) keep the small mempool overflowing.
            for _ in range(4 if k < -WARMUP + 3 else 1):
                for _ in range(14):
                    junk = scenario.junk_rate * math.exp(rng.gauss(0, 0.05))
                    txs.append(load_tx(self.pool.pop(), junk, 95_000)[0])
        await self.rpc.batch(("sendrawtransaction", [raw, 0]) for raw in txs)

    # The replayed policies.

    async def act(self, name: str, tip: int) -> None:
        book, policy = self.books[name], REPLAYS[name]
        assert self.market is not None
        market = self.market
        for level in book.ready():
            rate = policy.want(level, book, tip, market)
            if rate is None:
                continue
            package = level.vsize + CHILD_VSIZE_ESTIMATE
            coin = level.coin or self.pool.pop()
            fee = math.ceil(rate * package / 1000)
            if level.coin is not None:
                increment = market.incremental if policy.increment is None else policy.increment
                fee = max(fee, level.fee + math.ceil(increment * package / 1000))
            child = cpfp_child(level.tx, coin, fee)
            answer = await self.rpc.call(
                "submitpackage", [level.tx.serialize().hex(), child.serialize().hex()]
            )
            if answer.get("package_msg") != "success":
                book.rejected += 1
                continue
            if level.coin is not None:
                level.rbf += 1
            level.coin, level.fee, level.broadcast_at = coin, fee, tip
            level.rate = fee * 1000 // (level.vsize + tx_vsize(child))

    async def claim(self, name: str, tip: int) -> None:
        """One claim of the policy's exits claimable in the next block whose claim is not in the
        mempool (never sent, refused, or dropped), at the policy's claim rate now."""
        book = self.books[name]
        assert self.market is not None
        due = [
            e
            for e in book.exits
            if e.key not in book.claimed and (at := e.claimable_at) is not None and tip + 1 >= at
        ]
        sent = sorted({book.claim_of[e.key] for e in due if e.key in book.claim_of})
        answers = await self.rpc.batch(("getmempoolentry", [txid]) for txid in sent)
        waiting = {txid for txid, a in zip(sent, answers, strict=True) if not isinstance(a, RpcError)}
        due = [e for e in due if book.claim_of.get(e.key) not in waiting]
        if not due:
            return
        rate = max(REPLAYS[name].claim(tip, self.market), self.market.floor)
        inputs = []
        for e in due:
            vtxo = e.vtxo.vtxo
            assert isinstance(vtxo.policy, UserPolicy) and e.vtxo.user.secret is not None
            clause = vtxo.policy.user_claim_clause(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
            signer = ClaimSigner(clause, e.vtxo.user.secret, None)
            inputs.append(ClaimInput(OutPoint.from_str(e.key), vtxo.amount, clause.script_pubkey, signer))
        tx, fee = build_claim_tx(inputs, CLAIM_DESTINATION, rate, tip)
        try:
            txid = await self.rpc.call("sendrawtransaction", tx.serialize().hex())
        except RpcError:
            book.claims_refused += 1
            return
        book.claims[txid] = Claim(txid, fee, [e.key for e in due])
        for e in due:
            book.claim_of[e.key] = txid

    async def forget_evicted(self) -> None:
        """A package the full mempool evicted is sent again (from scratch) by its policy."""
        pending = [
            (lv, b2lx(cpfp_child(lv.tx, lv.coin, lv.fee).GetTxid()))
            for name in REPLAYS
            if name in self.books
            for lv in self.books[name].ready()
            if lv.coin is not None
        ]
        answers = await self.rpc.batch(("getmempoolentry", [txid]) for _, txid in pending)
        for (level, _), answer in zip(pending, answers, strict=True):
            if isinstance(answer, RpcError):
                level.coin, level.fee, level.rate = None, 0, 0

    # The chain.

    async def observe(self, height: int, floor: int) -> None:
        block = await self.rpc.call("getblock", await self.rpc.call("getblockhash", height), 2)
        txs = {tx["txid"]: tx for tx in block["tx"][1:]}
        for txid in txs.keys() & self.load.keys():
            self.pool.insert(0, Coin(txid, 0, self.load.pop(txid)))
        spenders: dict[tuple[str, int], dict[str, Any]] = {}
        for tx in txs.values():
            for vin in tx["vin"]:
                spenders[(vin["txid"], vin["vout"])] = tx
        # The policies' claims: small, they fill the gap a block's last package leaves at any rate, so they
        # say nothing of what a package had to pay to get in.
        claims = {
            spenders[(p.txid_hex, p.vout)]["txid"]
            for book in self.books.values()
            for e in book.exits
            if (p := OutPoint.from_str(e.key)) and (p.txid_hex, p.vout) in spenders
        }
        rates = []
        used = 0
        for tx in txs.values():
            used += tx["vsize"]
            fee = btc_to_sat(tx["fee"])
            if tx["txid"] in claims:
                continue
            parents = [txs[v["txid"]] for v in tx["vin"] if v["txid"] in txs]
            if fee == 0 and not parents:
                continue  # a zero-fee exit tx: its child's package carries it
            fees = fee + sum(btc_to_sat(p["fee"]) for p in parents)
            rates.append(fees / (tx["vsize"] + sum(p["vsize"] for p in parents)))
        full = used >= FULL * BLOCK_VSIZE
        lowest = min(rates) if full and rates else floor / 1000
        assert self.market is not None
        e1, e6 = self.market.estimate(height - 1, 1), self.market.estimate(height - 1, 6)
        n, m = self.exitd_next_block.get(height - 1, (None, None))
        stats = BlockStats(height, lowest, full, floor / 1000, e1 and e1 / 1000, e6 and e6 / 1000)
        stats.next_block, stats.recent = n and n / 1000, m and m / 1000
        self.blocks.append(stats)
        for name, book in self.books.items():
            for level in book.levels.values():
                if level.confirmed_at is None and level.txid in txs:
                    anchor = len(level.tx.vout) - 1
                    child = spenders.get((level.txid, anchor))
                    level.confirmed_at = height
                    level.coin = None
                    if child is not None:
                        level.paid = btc_to_sat(child["fee"])
                        level.paid_rate = level.paid * 1000 // (level.vsize + child["vsize"])
                        self.paid.setdefault(name, []).append((height, level.paid_rate / 1000))
            for e in book.exits:
                point = OutPoint.from_str(e.key)
                claim = spenders.get((point.txid_hex, point.vout))
                if claim is None or e.key in book.claimed:
                    continue
                # exitd's claims are seen first here (its guard sent them).
                known = book.claims.setdefault(
                    claim["txid"], Claim(claim["txid"], btc_to_sat(claim["fee"]), [e.key])
                )
                known.confirmed_at = height
                book.claim_of[e.key] = claim["txid"]
                book.claimed[e.key] = height

    async def pending_exitd_claims(self) -> None:
        """exitd's claims still in the mempool at the end: their fees count, as the replayed ones' do."""
        book = self.books.get("exitd")
        if book is None:
            return
        for e in book.exits:
            live = self.daemon.engine.exits.get(e.key)
            txid = live.state.claim_txid if live is not None else None
            if e.key in book.claimed or not txid:
                continue
            try:
                entry = await self.rpc.call("getmempoolentry", txid)
            except RpcError:
                continue
            book.claims.setdefault(txid, Claim(txid, btc_to_sat(entry["fees"]["base"]), []))
            book.claim_of[e.key] = txid

    def done(self, tip: int) -> bool:
        """Every exit completed and claimed, given up on (past its expiry), or its claim waited
        CLAIM_WAIT blocks."""
        for book in self.books.values():
            for e in book.exits:
                at = e.claimable_at
                if e.key in book.claimed or (at is None and tip > e.expiry):
                    continue
                if at is None or tip < at + CLAIM_WAIT:
                    return False
        return True


# Setting up: the pool, the VTXOs, exitd.


async def make_pool(node: RegtestNode, rpc: BitcoinRpc, coins: int) -> list[Coin]:
    """`coins` confirmed OP_TRUE coins of POOL_COIN: the miner pays one OP_TRUE output, split in two
    rounds of fan-outs that each fit a small block."""
    per_tx = 400
    fanouts = -(-coins // per_tx)
    address = script_to_address(OP_TRUE_SPK, "regtest")
    total = fanouts * (per_tx * POOL_COIN + 100_000) + 1_000_000
    node.fund_miner(total // SAT + 2)
    txid = node.rpc("sendtoaddress", address, f"{total / SAT:.8f}", wallet=MINER_WALLET)
    vout = next(
        o["n"]
        for o in node.rpc("getrawtransaction", txid, True)["vout"]
        if o["scriptPubKey"]["hex"] == OP_TRUE_SPK.hex()
    )
    node.mine(1)
    first = CTransaction(
        [CTxIn(COutPoint(lx(txid), vout), nSequence=BIP125_SEQUENCE)],
        [CTxOut(per_tx * POOL_COIN + 100_000, CScript(OP_TRUE_SPK)) for _ in range(fanouts)],
        nVersion=2,
        witness=CTxWitness([op_true_witness()]),
    )
    first_txid = await rpc.call("sendrawtransaction", first.serialize().hex(), 0)
    node.mine(1)
    pool: list[Coin] = []
    for i in range(fanouts):
        tx = CTransaction(
            [CTxIn(COutPoint(lx(first_txid), i), nSequence=BIP125_SEQUENCE)],
            [CTxOut(POOL_COIN, CScript(OP_TRUE_SPK)) for _ in range(per_tx)],
            nVersion=2,
            witness=CTxWitness([op_true_witness()]),
        )
        fanout = await rpc.call("sendrawtransaction", tx.serialize().hex(), 0)
        pool += [Coin(fanout, n, POOL_COIN) for n in range(per_tx)]
    while (await rpc.call("getmempoolinfo"))["size"]:
        node.mine(1)
    return pool


async def run_scenario(
    scenario: Scenario, seed: int, groups: Sequence[Group], policies: Sequence[str], out: Path | None
) -> dict[str, Any]:
    args = [f"-blockmaxweight={BLOCK_MAX_WEIGHT}", f"-maxmempool={scenario.max_mempool_mb}"]
    with regtest_node(extra_args=args) as node:
        rpc = BitcoinRpc(node.rpc_url, RpcCredentials(cookie_file=node.cookie_file))
        try:
            guard = GuardConfig(claim_address="wallet")  # auto-claim to exitd's wallet
            async with running_daemon(node, guard=guard) as daemon:
                return await _run(scenario, seed, groups, policies, node, rpc, daemon, out)
        finally:
            await rpc.close()


async def _run(
    scenario: Scenario,
    seed: int,
    groups: Sequence[Group],
    policies: Sequence[str],
    node: RegtestNode,
    rpc: BitcoinRpc,
    daemon: Daemon,
    out: Path | None,
) -> dict[str, Any]:
    rng = random.Random(f"{scenario.name}/{seed}")
    warmup = WARMUP
    pool = await make_pool(node, rpc, POOL_COINS)
    if "exitd" in policies:
        await fund_wallet(daemon, node, EXITD_COINS)
    forge = Forge(node)
    keys = iter(range(1_000))

    def exitd_key() -> UserKey:
        """A key of exitd's VTXO keychain: the claim is exitd's to sign."""
        return UserKey.from_secret(daemon.vtxos.keychain.seckey(next(keys)))

    forges = len(groups) * len(policies)
    start = node.height() + forges + warmup
    books = {p: Book(p) for p in policies}
    for group in groups:
        slack = TIGHT_SLACK if group.tight else LOOSE_SLACK
        expiry = start + group.depth + DEFAULT_EXIT_DELTA + slack
        for p in policies:
            owner = exitd_key if p == "exitd" else lambda: None
            for vtxo in forge_group(forge, group, expiry, owner):
                books[p].add(vtxo, group)
    assert node.height() == start - warmup, (node.height(), start, warmup)
    exitd_ids: list[str] = []
    if "exitd" in policies:
        rows = await daemon.vtxos.import_vtxos([e.vtxo.hex for e in books["exitd"].exits])
        exitd_ids = [r.vtxo_id for r in rows]
    run = Run(scenario, seed, node, rpc, daemon, books, pool)
    run.start = start
    run.market = Market(rpc)
    targets = sorted({t for p in policies if p in REPLAYS for t in REPLAYS[p].targets} | {1, 3, 6})
    op_true = script_to_address(OP_TRUE_SPK, "regtest")
    k = -warmup
    while True:
        tip = node.height()
        k = tip - start
        await run.send_load(k, rng)
        await run.market.read(tip, targets)
        if "exitd" in policies:
            market = await daemon.fees.market([], next_block=PACKAGE_ROOM)
            run.exitd_next_block[tip] = (market.next_block, market.usual)
        if k >= 0:
            if k == 0 and exitd_ids:
                await daemon.engine.start(exitd_ids)
            await run.forget_evicted()
            for p in policies:
                if p in REPLAYS:
                    await run.act(p, tip)
                    await run.claim(p, tip)
            if "exitd" in policies:
                began = time.monotonic()
                await daemon.engine.progress()
                run.cycle_seconds.append(time.monotonic() - began)
                await daemon.guard.act(daemon.engine)
        floor = run.market.floor
        await rpc.call("generatetoaddress", 1, op_true)
        await run.observe(tip + 1, floor)
        if k >= 0 and run.done(tip + 1):
            break
        if k > LOOSE_SLACK + CLAIM_WAIT:
            break
    await run.pending_exitd_claims()
    if "exitd" in policies:
        for level in books["exitd"].levels.values():
            tracked = daemon.engine.txs.get(level.txid)
            if tracked is not None:
                level.rbf = max(0, sum(1 for c in tracked.children.values() if c.ours) - 1)
    result = summarize(run)
    if out is not None:
        plot(run, out)
    return result


# The oracle and the figures.


def oracle(book: Book, blocks: Sequence[BlockStats], start: int) -> dict[str, int]:
    """Per tx tree root: the cheapest CPFP fees that would have confirmed every tx by its deadline, each
    after its parent, paying each block's lowest included rate (sat)."""
    lowest = {b.height: b.lowest for b in blocks}
    heights = sorted(lowest)

    def cost(level: Level, after: int) -> float:
        best = math.inf
        for h in heights:
            if h <= after or h > level.deadline:
                continue
            here = lowest[h] * (level.vsize + CHILD_VSIZE_ESTIMATE)
            here += sum(cost(child, h) for child in level.children)
            best = min(best, here)
        return best

    roots = [lv for lv in book.levels.values() if lv.parent is None]
    return {lv.txid: math.ceil(c) if (c := cost(lv, start)) < math.inf else -1 for lv in roots}


def summarize(run: Run) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    lowest = {b.height: round(b.lowest, 2) for b in run.blocks}
    for name, book in run.books.items():
        roots = oracle(book, run.blocks, run.start)
        feasible = 0
        completed = 0
        blocks_to_claimable = []
        for e in book.exits:
            root = e.levels[0]
            budget_ok = roots.get(root.txid, -1) >= 0
            feasible += budget_ok
            done = e.completed_at
            if done is not None and done < e.expiry:
                completed += 1
                blocks_to_claimable.append(done + DEFAULT_EXIT_DELTA - run.start)
        cpfp = sum(lv.paid for lv in book.levels.values())
        oracle_fees = sum(v for v in roots.values() if v >= 0)
        figures[name] = {
            "exits": len(book.exits),
            "feasible": feasible,
            "completed": completed,
            "completed_pct": round(100 * completed / len(book.exits), 1),
            "blocks_to_claimable_median": statistics.median(blocks_to_claimable)
            if blocks_to_claimable
            else None,
            "blocks_to_claimable_max": max(blocks_to_claimable) if blocks_to_claimable else None,
            "cpfp_fees": cpfp,
            "claim_fees": book.claim_fees,
            "claims_confirmed": len(book.claimed),
            "claims_refused": book.claims_refused,
            "blocks_to_claimed_median": statistics.median([h - run.start for h in book.claimed.values()])
            if book.claimed
            else None,
            "total_fees": cpfp + book.claim_fees,
            "oracle_cpfp_fees": oracle_fees,
            "fees_over_oracle": round(cpfp / oracle_fees, 3) if oracle_fees else None,
            "rbf": book.rbf_count(),
            "rejected_packages": book.rejected,
            "by_group": group_figures(book, run.blocks),
            "levels": [
                [e.group.kind, e.group.depth, e.group.tight]
                + [
                    (lv.confirmed_at - run.start, lv.paid_rate / 1000, lowest[lv.confirmed_at], lv.rbf)
                    for lv in e.levels
                    if lv.confirmed_at is not None
                ]
                for e in book.exits
            ],
        }
    if run.cycle_seconds:
        figures["exitd"]["cycle_ms_median"] = round(1000 * statistics.median(run.cycle_seconds), 1)
        figures["exitd"]["cycle_ms_max"] = round(1000 * max(run.cycle_seconds), 1)
    market = [b.lowest for b in run.blocks if b.height > run.start]
    trace = [
        (b.height - run.start, round(b.lowest, 2), b.next_block, b.recent, b.estimate1)
        for b in run.blocks
        if b.height > run.start
    ]
    return {
        "scenario": run.scenario.name,
        "seed": run.seed,
        "blocks": len([b for b in run.blocks if b.height > run.start]),
        "full_blocks": sum(b.full for b in run.blocks if b.height > run.start),
        "market_median_sat_vb": round(statistics.median(market), 2) if market else None,
        "policies": figures,
        "trace": trace,
    }


def group_figures(book: Book, blocks: Sequence[BlockStats]) -> dict[str, Any]:
    """Per shape: completed, and the highest ratio of a level's paid package rate to the market of the
    block that confirmed it (its lowest included rate, the floor when it had room)."""
    lowest = {b.height: b.lowest for b in blocks}
    out: dict[str, Any] = {}
    for e in book.exits:
        g = e.group
        key = f"{g.kind}-d{g.depth}-{'tight' if g.tight else 'loose'}"
        entry = out.setdefault(key, {"exits": 0, "completed": 0, "max_paid_over_market": 0.0})
        entry["exits"] += 1
        done = e.completed_at
        entry["completed"] += done is not None and done < e.expiry
        for lv in e.levels:
            if lv.confirmed_at is not None:
                ratio = round(lv.paid_rate / 1000 / lowest[lv.confirmed_at], 2)
                entry["max_paid_over_market"] = max(entry["max_paid_over_market"], ratio)
    return out


def plot(run: Run, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = [b.height - run.start for b in run.blocks]
    ax.plot(xs, [b.lowest for b in run.blocks], color="black", lw=1.2, label="market: lowest included rate")
    ax.plot(xs, [b.floor for b in run.blocks], color="grey", lw=0.8, ls="--", label="mempoolminfee")
    ax.plot(
        xs,
        [b.estimate1 or math.nan for b in run.blocks],
        color="grey",
        lw=0.8,
        ls=":",
        label="estimatesmartfee 1",
    )
    if any(b.next_block for b in run.blocks):
        next_block = [b.next_block or math.nan for b in run.blocks]
        ax.plot(xs, next_block, color="tab:red", lw=0.6, alpha=0.6, label="exitd: next-block rate N")
    markers = {
        "exitd": ("o", "tab:red"),
        "barkd": ("s", "tab:blue"),
        "lightning-labs": ("^", "tab:green"),
        "lnd": ("D", "tab:purple"),
    }
    for name, points in run.paid.items():
        marker, color = markers[name]
        ax.scatter(
            [h - run.start for h, _ in points],
            [r for _, r in points],
            marker=marker,
            color=color,
            s=22,
            alpha=0.8,
            label=f"{name}: package confirmed",
        )
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("blocks since the exits started")
    ax.set_ylabel("sat/vB")
    ax.set_title(f"fee market '{run.scenario.name}' (seed {run.seed})")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one scenario, exitd alone, few VTXOs (CI)")
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    groups = QUICK_GROUPS if args.quick else GROUPS
    policies = ["exitd"] if args.quick else args.policies
    scenarios = ["steady"] if args.quick and args.scenarios == list(SCENARIOS) else args.scenarios
    print(machine(), flush=True)
    results = []
    for name in scenarios:
        began = time.monotonic()
        out = None if args.no_plot else Path(__file__).parent / f"fee_market_{name}.png"
        result = asyncio.run(run_scenario(SCENARIOS[name], args.seed, groups, policies, out))
        result["seconds"] = round(time.monotonic() - began, 1)
        results.append(result)
        print(report(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def report(result: dict[str, Any]) -> str:
    lines = [
        f"\n## {result['scenario']} (seed {result['seed']}): {result['blocks']} blocks, "
        f"{result['full_blocks']} full, market median {result['market_median_sat_vb']} sat/vB, "
        f"{result['seconds']} s",
        "| policy | completed before expiry | of feasible | blocks to claimable (median / max) | CPFP fees "
        "| claim fees | claims confirmed | total | oracle CPFP | CPFP ÷ oracle | RBF "
        "| exitd cycle ms (median / max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in result["policies"].items():
        cycle = f"{f['cycle_ms_median']} / {f['cycle_ms_max']}" if "cycle_ms_median" in f else ""
        lines.append(
            f"| {name} | {f['completed']}/{f['exits']} ({f['completed_pct']} %) | {f['feasible']} "
            f"| {f['blocks_to_claimable_median']} / {f['blocks_to_claimable_max']} | {f['cpfp_fees']} "
            f"| {f['claim_fees']} | {f['claims_confirmed']} | {f['total_fees']} | {f['oracle_cpfp_fees']} "
            f"| {f['fees_over_oracle']} "
            f"| {f['rbf']} | {cycle} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
