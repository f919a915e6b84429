"""The funding plan without a node: floors, the schedule of the blocks ahead, the split, and how children
choose their coins by it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from exitd.ark.encoding import TxOut
from exitd.chain.fees import fee_at_rate
from exitd.wallet.builder import plan_cpfp_child, plan_fan_out, sign, wallet_tx_vsize
from exitd.wallet.coinselection import Coin, select_coins
from exitd.wallet.errors import AmountBelowDust
from exitd.wallet.planner import (
    CHANGE_DUST,
    MAX_FAN_OUT,
    SIZING_SPK,
    Lack,
    PlannedTx,
    blocks_needed,
    children_soon,
    floors,
    package_need,
    plan_funding,
    schedule,
    with_headroom,
)
from tests.support.wallet import ACCOUNT, DESTINATION, coin, zero_fee_parent

RATE = 2_000  # sat/kvB
ANCHOR = "aa" * 32  # the confirmed tx the roots spend


def chain(name: str, levels: int, funded: bool = False) -> list[PlannedTx]:
    """An arkoor-like chain of `levels` txs on a confirmed anchor; `funded`: its first has a child."""
    txids = [f"{name}{level}" for level in range(levels)]
    return [
        PlannedTx(txid, parent, 150, RATE, funded and level == 0)
        for level, (txid, parent) in enumerate(zip(txids, [ANCHOR, *txids], strict=False))
    ]


def round_tree(leaves_per_node: int = 2, nodes: int = 4) -> list[PlannedTx]:
    """A radix tree of depth 3, as the forge makes for 8 leaves of arity 4: a root, `nodes` nodes, and
    `leaves_per_node` leaf txs under each node."""
    txs = [PlannedTx("root", ANCHOR, 200, RATE, False)]
    for n in range(nodes):
        txs.append(PlannedTx(f"node{n}", "root", 180, RATE, False))
        txs += [PlannedTx(f"leaf{n}.{i}", f"node{n}", 150, RATE, False) for i in range(leaves_per_node)]
    return txs


def tree_and_board() -> list[PlannedTx]:
    return [*round_tree(), *chain("board", 1)]


def coins(*values: int) -> list[Coin]:
    return [coin(value, n, n) for n, value in enumerate(values)]


def test_a_floor_pays_for_the_costliest_branch_below_and_a_change_above_dust() -> None:
    txs = tree_and_board()
    floor = floors(txs)
    by_id = {t.txid: t for t in txs}
    leaf = package_need(by_id["leaf0.0"]) + CHANGE_DUST
    assert floor["leaf0.0"] == floor["board0"] == leaf
    assert floor["node0"] == package_need(by_id["node0"]) + leaf
    assert floor["root"] == package_need(by_id["root"]) + floor["node0"]
    assert package_need(by_id["root"]) == fee_at_rate(
        RATE, 200 + wallet_tx_vsize(1, [TxOut(0, SIZING_SPK)], True)
    )
    assert blocks_needed(txs) == 3 and blocks_needed(chain("a", 5)) == 5 and blocks_needed([]) == 0


def test_children_soon_counts_the_unpaid_txs_of_this_level_and_the_next() -> None:
    # The root and the board are ready now, the four nodes once the root confirms; the leaves later.
    assert children_soon(tree_and_board()) == 2 + 4
    # A child pays for the root already: the next block's cycle builds the nodes' children only.
    paid = [replace(t, funded=True) if t.txid == "root" else t for t in round_tree()]
    assert children_soon(paid) == 4
    assert children_soon(chain("a", 3, funded=True)) == 1 and children_soon([]) == 0


def test_one_big_coin_funds_one_package_per_block() -> None:
    txs = tree_and_board()
    one = schedule(txs, [(1_000_000, 0)])
    assert one.blocks is not None and one.blocks > 2 * blocks_needed(txs)
    assert one.taken_now == {0} and one.lacking == ()


def test_a_coin_per_chain_funds_every_level_in_the_same_block() -> None:
    txs = tree_and_board()
    floor = floors(txs)
    # One coin per leaf chain, each worth its floor: the root's, three nodes', four leaves' and the board's.
    heads = ["root", "board0", "node1", "node2", "node3", "leaf0.1", "leaf1.1", "leaf2.1", "leaf3.1"]
    planned = schedule(txs, [(floor[h], 0) for h in heads])
    assert planned.blocks == 3 and planned.lacking == ()
    assert planned.taken_now == {0, 1}  # the root and the board now; the others wait for their level


def test_a_child_change_pays_for_the_next_level_of_its_chain() -> None:
    txs = chain("arkoor", 5)
    assert schedule(txs, [(floors(txs)["arkoor0"], 0)]).blocks == 5
    assert schedule(txs, [(floors(txs)["arkoor0"] - 1, 0)]).blocks is None  # the last level lacks a sat


def test_coins_in_the_mempool_arrive_a_block_later() -> None:
    txs = chain("a", 2)
    assert schedule(txs, [(100_000, 1)]).blocks == 3
    funded = chain("f", 2, funded=True)  # its first level's child is in the mempool, its change arriving
    assert schedule(funded, [(100_000, 1)]).blocks == 2


def test_an_empty_wallet_lacks_a_coin_per_chain_at_the_block_it_is_needed() -> None:
    txs = tree_and_board()
    floor = floors(txs)
    lacking = schedule(txs, [], mint_from=0).lacking
    assert len(lacking) == 9  # 8 leaves of the tree and the board
    assert sorted(lacking, key=lambda lack: (lack.block, lack.value)) == [
        Lack(floor["board0"], 0),
        Lack(floor["root"], 0),
        *[Lack(floor["node1"], 1)] * 3,
        *[Lack(floor["leaf0.0"], 2)] * 4,
    ]
    later = schedule(txs, [], mint_from=1)
    assert later.blocks == 4 and min(lack.block for lack in later.lacking) == 1


def test_one_coin_is_split_into_a_coin_per_chain_with_headroom() -> None:
    txs = tree_and_board()
    wallet = coins(1_000_000)
    plan = plan_funding(txs, wallet, [], 5_000, 100)
    split = plan.split
    assert split is not None and split.version == 2 and split.locktime == 100 and split.coins == tuple(wallet)
    expected = sorted(with_headroom(lack.value) for lack in schedule(txs, [], mint_from=1).lacking)
    *made, leftover = split.outputs
    assert sorted(o.value for o in made) == expected and leftover.value > max(expected)
    assert split.fee == fee_at_rate(5_000, wallet_tx_vsize(1, split.outputs))
    outlook = plan.outlook
    assert (outlook.blocks_needed, outlook.extra_blocks) == (3, 1)  # the split's block
    assert (outlook.coins_needed, outlook.coins_available, outlook.coins_arriving) == (9, 0, 10)
    assert outlook.coin_size == floors(txs)["root"] and outlook.missing == 0
    assert plan.floors == floors(txs)


def test_no_split_while_the_coins_suffice_or_another_split_is_unconfirmed() -> None:
    txs = tree_and_board()
    enough = plan_funding(txs, coins(*[100_000] * 9), [], 5_000, 100)
    assert enough.split is None and enough.outlook.extra_blocks == 0
    waiting = plan_funding(txs, coins(1_000_000), [], 5_000, 100, may_split=False)
    assert waiting.split is None and waiting.outlook.extra_blocks is not None
    assert waiting.outlook.extra_blocks > 1
    arriving = plan_funding(txs, [], [100_000] * 9, 5_000, 100)  # a split in the mempool
    assert arriving.split is None and arriving.outlook.extra_blocks == 1


def test_the_coins_of_this_block_are_kept_and_the_rest_split() -> None:
    txs = tree_and_board()
    wallet = coins(50_000, 60_000, 1_000_000)
    plan = plan_funding(txs, wallet, [], 5_000, 100)
    assert plan.split is not None and plan.split.coins == (wallet[2],)
    assert plan.outlook.extra_blocks == 0  # the root and the board go now, the split serves the rest


def test_a_short_wallet_splits_what_it_can_and_says_what_is_missing() -> None:
    txs = tree_and_board()
    lacking = sorted(lack.value for lack in schedule(txs, [], mint_from=1).lacking)
    tight = plan_funding(txs, coins(sum(lacking) + 2_000), [], 1_000, 100)  # short of the headroom
    assert tight.split is not None
    assert sorted(o.value for o in tight.split.outputs[: len(lacking)]) == lacking  # at their bare floors
    needed = sum(lack.value for lack in schedule(txs, [], mint_from=0).lacking)
    poor = plan_funding(txs, coins(3 * max(lacking)), [], 1_000, 100)  # no split finishes: none is made
    assert poor.split is None and poor.outlook.extra_blocks is None
    assert poor.outlook.missing == needed - 3 * max(lacking)
    broke = plan_funding(txs, [], [], 1_000, 100)
    assert broke.split is None and broke.outlook.extra_blocks is None and broke.outlook.missing == needed


def test_a_split_makes_at_most_max_fan_out_coins() -> None:
    txs = round_tree(leaves_per_node=MAX_FAN_OUT // 2, nodes=4)
    plan = plan_funding(txs, coins(100_000_000), [], 1_000, 100)
    assert plan.split is not None and len(plan.split.outputs) == MAX_FAN_OUT + 1  # and the leftover


def test_a_fan_out_never_makes_a_coin_below_a_useful_size() -> None:
    wallet = coins(100_000)
    made = [TxOut(20_000, SIZING_SPK), TxOut(30_000, SIZING_SPK)]
    split = plan_fan_out(wallet, made, SIZING_SPK, 2_000, 0)
    assert [o.value for o in split.outputs][:2] == [20_000, 30_000] and len(split.outputs) == 3
    assert split.fee == fee_at_rate(2_000, wallet_tx_vsize(1, split.outputs))
    almost = plan_fan_out(
        wallet, [TxOut(45_000, SIZING_SPK), TxOut(40_000, SIZING_SPK)], SIZING_SPK, 2_000, 0
    )
    assert len(almost.outputs) == 2 and almost.outputs[0].value > 45_000  # the leftover went to the largest
    assert almost.fee == fee_at_rate(2_000, wallet_tx_vsize(1, almost.outputs))
    with pytest.raises(AmountBelowDust):
        plan_fan_out(wallet, [TxOut(CHANGE_DUST - 1, SIZING_SPK)], SIZING_SPK, 2_000, 0)
    assert sign(split, ACCOUNT).nVersion == 2


def test_a_child_takes_the_smallest_coin_worth_its_floor() -> None:
    wallet = coins(5_000, 12_000, 40_000, 900_000)

    def need(target: int) -> Callable[[int], int]:
        return lambda k: target + 100 * k

    assert select_coins(wallet, need(3_000), 10) == [wallet[0]]
    assert select_coins(wallet, need(3_000), 10, floor=10_000) == [wallet[1]]
    assert select_coins(wallet, need(3_000), 10, floor=1_000_000) == [wallet[0]]  # none: the closest
    assert select_coins(wallet, need(20_000), 10, floor=30_000) == [wallet[2]]
    draft = plan_cpfp_child(zero_fee_parent(), wallet, DESTINATION, 2_000, None, 100, floor=30_000)
    assert draft.coins == (wallet[2],)


def test_the_coins_a_split_leaves_alone_pay_for_what_they_can() -> None:
    txs = tree_and_board()
    floor = floors(txs)
    leaf_coins = [floor["leaf0.0"]] * 4
    wallet = coins(1_000_000, *leaf_coins)
    plan = plan_funding(txs, wallet, [], 5_000, 100)
    assert plan.split is not None and plan.split.coins == (wallet[0],)
    assert len(plan.split.outputs) == 9 - 4 + 1  # the four leaf coins fund four leaves; and the leftover
    assert plan.outlook.extra_blocks == 1
