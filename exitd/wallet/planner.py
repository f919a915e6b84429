"""The funding plan: confirmed coins enough, and of the right sizes, for every exit to advance one level per
block, whatever the shape of the wallet.

A CPFP child of an unconfirmed TRUC parent may spend only confirmed coins besides the parent's anchor (the
parent is its one unconfirmed ancestor), and its change confirms with it, so it is usable a block later.
A wallet of one big coin thus funds one package per block, and a tree of many VTXOs advances one package,
not one level, per block. TRUC's own limit is one level per block for every exit; this module plans for
it (fee-bumping-anchors.md section 4 item 9: ts-sdk's splitter, Blink's fan-out, Spark's threading).

- Chains. One coin pays for a whole chain of levels: a child's change, confirmed with its level, pays for
  the next level. A tx shared by several exits is paid once; where a tree branches, the costliest branch
  carries the coin on and every other branch needs a coin of its own. A tx's floor is what its coin must
  hold for that: its package, then the costliest floor below it, and a change above dust at the end.
- The schedule plays the blocks ahead at today's rates: in each block every ready level takes the
  smallest coin worth its floor, else the smallest that pays for its own package (the CPFP builder's
  rule, select_coins), else it waits a block. Our coins in the mempool (children's change, a split's
  outputs) arrive in the next block.
- The split. When the schedule with the wallet as it is takes more blocks than there are levels left, one
  version-2 fan-out tx at the next-block rate turns confirmed coins into the coins the schedule lacks,
  each with headroom over its floor (3/2) so that it still carries its chain when the rate rises, or at
  its bare floor when the coins cannot afford more. Two splits are weighed, and one is made only if the
  exits then finish sooner: the coins this block's levels take are kept for them and the rest is split;
  or everything is split (a wallet of one coin), which costs the levels ready now a block. A wallet that
  cannot finish the exits makes no split; the outlook says how much is missing.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from heapq import heappop, heappush
from itertools import count

from exitd.ark.encoding import TxOut
from exitd.ark.script import p2tr_script
from exitd.wallet.builder import Draft, package_fee, plan_fan_out, wallet_tx_vsize
from exitd.wallet.coinselection import Coin
from exitd.wallet.errors import InsufficientFunds
from exitd.wallet.mempool_rules import dust_threshold

# Every output of the wallet is P2TR, all of one size: plans are sized with this script, and the wallet
# gives each output of a split a fresh one of its own.
SIZING_SPK = p2tr_script(bytes(32))
# A CPFP child as the plan funds it: the anchor and one coin in, one change out.
PLANNED_CHILD_VSIZE = wallet_tx_vsize(1, [TxOut(0, SIZING_SPK)], anchor=True)
CHANGE_DUST = dust_threshold(SIZING_SPK)
# A split's coin holds its floor times 3/2: its chain's later levels may pay up to 1.5x today's rate (the
# fee policy's escalation as expiry nears, a higher estimate, a replacement) and still be paid from it.
HEADROOM_NUMERATOR, HEADROOM_DENOMINATOR = 3, 2
# Outputs of one split: 2,000 P2TR outputs are 86 kvB, within a standard tx (100 kvB) with a few inputs;
# more coins come from the next split.
MAX_FAN_OUT = 2_000


@dataclass(frozen=True)
class PlannedTx:
    """An exit tx not confirmed yet, as the plan sees it (a tx shared by several exits is listed once)."""

    txid: str
    # The tx whose output it spends: when that is not among the planned txs (it is confirmed), this one
    # is ready now.
    parent: str
    vsize: int
    rate: int  # sat/kvB its package aims at
    # A child pays for it already (ours stored or in the mempool, or someone else's in the mempool).
    funded: bool


@dataclass(frozen=True)
class Lack:
    """A coin the schedule needed and did not have: worth `value` (a floor), `block` blocks from now."""

    value: int
    block: int


@dataclass(frozen=True)
class Schedule:
    """The blocks ahead as `schedule` plays them."""

    # Blocks until every planned tx is confirmed; None when the coins never suffice.
    blocks: int | None
    # Indices of the coins given to `schedule` that the levels ready now take.
    taken_now: frozenset[int]
    lacking: tuple[Lack, ...]


@dataclass(frozen=True)
class FundingOutlook:
    """The plan as the API and the CLI show it (amounts in sat)."""

    blocks_needed: int  # the limit: one block per level left
    extra_blocks: int | None  # blocks beyond the limit with this wallet; None: it cannot finish
    coins_needed: int  # one per chain of levels not paid for yet
    coin_size: int  # the largest of them
    coins_available: int  # confirmed, promised to nothing, worth at least the cheapest level
    coins_arriving: int  # ours in the mempool: usable from the next block
    missing: int  # what the wallet lacks to fund the plan
    split_txid: str | None = None


@dataclass(frozen=True)
class FundingPlan:
    # The floor of each planned tx: the CPFP builder prefers a coin worth it.
    floors: Mapping[str, int]
    # The fan-out to make now, its outputs still to the sizing script; None: no split saves a block.
    split: Draft | None
    outlook: FundingOutlook


def package_need(tx: PlannedTx) -> int:
    """What one coin pays for `tx`'s package: its child spends the anchor and that coin."""
    return package_fee(tx.rate, tx.vsize + PLANNED_CHILD_VSIZE)


def least_useful(txs: Sequence[PlannedTx]) -> int:
    """The smallest coin that pays for a level (its package, and a change above dust): any smaller pays
    for nothing the plan needs."""
    return min((package_need(t) + CHANGE_DUST for t in txs), default=0)


def with_headroom(value: int) -> int:
    return -(-value * HEADROOM_NUMERATOR // HEADROOM_DENOMINATOR)


def depths(txs: Sequence[PlannedTx]) -> dict[str, int]:
    """Each tx's planned ancestors: the blocks before it can be ready, one level per block."""
    parent = {t.txid: t.parent for t in txs}
    depth: dict[str, int] = {}
    for tx in txs:
        path, txid = [], tx.txid
        while txid in parent and txid not in depth:
            path.append(txid)
            txid = parent[txid]
        known = depth.get(txid, -1)
        for step, above in enumerate(reversed(path), start=1):
            depth[above] = known + step
    return depth


def children_soon(txs: Sequence[PlannedTx]) -> int:
    """The CPFP children the next block's cycle may build: txs ready now or once the ones ready now
    confirm, that no child pays for yet."""
    depth = depths(txs)
    return sum(1 for tx in txs if depth[tx.txid] <= 1 and not tx.funded)


def floors(txs: Sequence[PlannedTx]) -> dict[str, int]:
    """Each tx's floor: its package, then the costliest floor among the txs spending it (the branch its
    coin carries on to), and a change above dust after the last level."""
    depth = depths(txs)
    below: dict[str, int] = {}
    floor: dict[str, int] = {}
    for tx in sorted(txs, key=lambda t: -depth[t.txid]):
        floor[tx.txid] = package_need(tx) + below.get(tx.txid, CHANGE_DUST)
        below[tx.parent] = max(below.get(tx.parent, 0), floor[tx.txid])
    return floor


def blocks_needed(txs: Sequence[PlannedTx]) -> int:
    """The limit: TRUC confirms one level of a chain per block."""
    return max(depths(txs).values(), default=-1) + 1


def schedule(
    txs: Sequence[PlannedTx], coins: Sequence[tuple[int, int]], mint_from: int | None = None
) -> Schedule:
    """The blocks ahead with `coins` (value, the block from which it is spendable: 0 confirmed, 1 in the
    mempool): each ready level takes a coin as the CPFP builder would, its change arriving a block later.

    With `mint_from`, a level ready from that block on that finds no coin gets one worth its floor,
    recorded as lacking; before it, or without `mint_from`, it waits a block for coins to arrive.
    """
    play = _Play(txs, coins)
    left, blocks, block = len(txs), 0, 0
    while left:
        play.arrive(block)
        minting = mint_from is not None and block >= mint_from
        confirming = play.confirm(block, minting)
        if not confirming and not play.arriving and (mint_from is None or minting):
            # Nothing will ever pay for the levels left.
            return Schedule(None, frozenset(play.taken), tuple(play.lacking))
        left -= len(confirming)
        blocks = block + 1 if confirming else blocks
        block += 1
    return Schedule(blocks, frozenset(play.taken), tuple(play.lacking))


class _Play:
    """The blocks ahead as `schedule` plays them, one block at a time: the levels ready, the coins usable
    and arriving, and what the levels took (of the coins given) or lacked."""

    def __init__(self, txs: Sequence[PlannedTx], coins: Sequence[tuple[int, int]]) -> None:
        self.floor = floors(txs)
        self.spending: dict[str, list[PlannedTx]] = {}
        for tx in txs:
            self.spending.setdefault(tx.parent, []).append(tx)
        # Ready levels, those paid for already first, then the costliest floor: a heap, so that a block
        # that has one coin for thousands of waiting levels costs one step, not thousands.
        self.ready: list[tuple[bool, int, int, PlannedTx]] = []
        self.order = count()
        planned = {t.txid for t in txs}
        self.make_ready(t for t in txs if t.parent not in planned)
        self.given = len(coins)
        self.arriving: dict[int, list[tuple[int, int]]] = {}
        for seq, (value, block) in enumerate(coins):
            self.arriving.setdefault(block, []).append((value, seq))
        # Coins that pay for no level are left out: the levels they cannot fund are not tried again.
        self.useful = least_useful(txs)
        self.usable: list[tuple[int, int]] = []
        self.changes = count(len(coins))  # the changes' places in `usable`, after the coins given
        self.taken: set[int] = set()
        self.lacking: list[Lack] = []

    def make_ready(self, batch: Iterable[PlannedTx]) -> None:
        for tx in batch:
            heappush(self.ready, (not tx.funded, -self.floor[tx.txid], next(self.order), tx))

    def arrive(self, block: int) -> None:
        """The coins spendable from `block` on become usable, those worth a level."""
        for arrived in self.arriving.pop(block, ()):
            if arrived[0] >= self.useful:
                insort(self.usable, arrived)

    def confirm(self, block: int, minting: bool) -> list[PlannedTx]:
        """The ready levels that confirm in `block`: those paid for, and those that take a usable coin or,
        when `minting`, one worth their floor that the wallet lacks (each change arriving a block later).
        The others wait for the next block, and the confirmed ones' children are ready then too."""
        ready, usable, floor, arriving = self.ready, self.usable, self.floor, self.arriving
        waiting: list[PlannedTx] = []
        confirming: list[PlannedTx] = []
        while ready and (usable or minting or not ready[0][0]):
            tx = heappop(ready)[-1]
            if not tx.funded:
                need = package_need(tx)
                coin = _take(usable, floor[tx.txid], need + CHANGE_DUST)
                if coin is not None:
                    value = coin[0]
                    if block == 0 and coin[1] < self.given:
                        self.taken.add(coin[1])
                elif minting:
                    value = floor[tx.txid]
                    self.lacking.append(Lack(value, block))
                else:
                    waiting.append(tx)
                    continue
                arriving.setdefault(block + 1, []).append((value - need, next(self.changes)))
            confirming.append(tx)
        self.make_ready(waiting)
        self.make_ready(child for tx in confirming for child in self.spending.get(tx.txid, ()))
        return confirming


def _take(usable: list[tuple[int, int]], floor: int, least: int) -> tuple[int, int] | None:
    """Remove and return the smallest coin worth `floor`, else the smallest worth `least`."""
    i = bisect_left(usable, (floor, -1))
    if i == len(usable):
        i = bisect_left(usable, (least, -1))
    return usable.pop(i) if i < len(usable) else None


def fan_out(coins: Sequence[Coin], lacking: Sequence[Lack], fee_rate: int, locktime: int) -> Draft | None:
    """The split of some of `coins` into the lacking coins (the earliest needed first, MAX_FAN_OUT at
    most): each with headroom if the coins afford it, else at its bare floor; None if they cannot."""
    wanted = sorted(lacking, key=lambda lack: (lack.block, -lack.value))[:MAX_FAN_OUT]
    if not wanted:
        return None
    for values in ([with_headroom(lack.value) for lack in wanted], [lack.value for lack in wanted]):
        try:
            return plan_fan_out(coins, [TxOut(v, SIZING_SPK) for v in values], SIZING_SPK, fee_rate, locktime)
        except InsufficientFunds:
            continue
    return None


def split_keeping(
    txs: Sequence[PlannedTx],
    confirmed: Sequence[Coin],
    arriving: Sequence[int],
    kept: Sequence[Coin],
    fee_rate: int,
    locktime: int,
) -> Draft | None:
    """A split of confirmed coins other than `kept` into what the blocks after this one lack, `kept` and
    the coins `arriving` paying for what they can; then cut down to what the coins it does not spend
    leave lacking."""
    lacking = schedule(txs, _spendable(kept, arriving), mint_from=1).lacking
    draft = fan_out(_without(confirmed, kept), lacking, fee_rate, locktime)
    if draft is None:
        return None
    left = _without(confirmed, draft.coins)
    still = schedule(txs, _spendable(left, arriving), mint_from=1).lacking
    return fan_out(draft.coins, still, fee_rate, locktime) or draft


def plan_funding(
    txs: Sequence[PlannedTx],
    confirmed: Sequence[Coin],
    arriving: Sequence[int],
    split_rate: int,
    locktime: int,
    may_split: bool = True,
) -> FundingPlan:
    """The plan for `txs` with the wallet's `confirmed` coins promised to nothing and the values of its
    coins `arriving` from the mempool: the floors, the split that saves the most blocks (if any, and if
    `may_split`: not while another split is unconfirmed), and the outlook once it is made."""
    limit = blocks_needed(txs)
    now = schedule(txs, _spendable(confirmed, arriving))
    split, blocks = None, now.blocks
    if may_split and now.blocks != limit:
        kept_now = [c for i, c in enumerate(confirmed) if i in now.taken_now]
        for kept in [kept_now, []] if kept_now else [[]]:
            draft = split_keeping(txs, confirmed, arriving, kept, split_rate, locktime)
            if draft is None:
                continue
            after = schedule(txs, _spendable(*_after_split(confirmed, arriving, draft))).blocks
            if after is not None and (blocks is None or after < blocks):
                split, blocks = draft, after
    if split is not None:
        confirmed, arriving = _after_split(confirmed, arriving, split)
    return FundingPlan(floors(txs), split, funding_outlook(txs, confirmed, arriving, limit, blocks))


def _without(coins: Sequence[Coin], spent: Iterable[Coin]) -> list[Coin]:
    gone = set(spent)
    return [c for c in coins if c not in gone]


def _spendable(confirmed: Sequence[Coin], arriving: Sequence[int]) -> list[tuple[int, int]]:
    return [(c.value, 0) for c in confirmed] + [(value, 1) for value in arriving]


def _after_split(
    confirmed: Sequence[Coin], arriving: Sequence[int], split: Draft
) -> tuple[list[Coin], list[int]]:
    """The wallet once `split` is in the mempool: its inputs spent, its outputs arriving."""
    return _without(confirmed, split.coins), [*arriving, *(o.value for o in split.outputs)]


def funding_outlook(
    txs: Sequence[PlannedTx],
    confirmed: Sequence[Coin],
    arriving: Sequence[int],
    limit: int,
    blocks: int | None,
) -> FundingOutlook:
    """What the plan needs (a coin per chain not paid for, from an empty wallet) against what there is."""
    needed = [lack.value for lack in schedule(txs, [], mint_from=0).lacking]
    useful = least_useful(txs)
    have = sum(c.value for c in confirmed) + sum(arriving)
    return FundingOutlook(
        blocks_needed=limit,
        extra_blocks=None if blocks is None else blocks - limit,
        coins_needed=len(needed),
        coin_size=max(needed, default=0),
        coins_available=sum(1 for c in confirmed if c.value >= useful),
        coins_arriving=len(arriving),
        missing=max(0, sum(needed) - have),
    )
