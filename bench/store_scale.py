"""The store at 100,000 exits, on SQLite and on PostgreSQL: what a new leader reads when it takes over, and
what a block that moves 1 % of the exits writes.

Forging 100,000 VTXOs on regtest takes hours on 2 cores, so the rows are written directly, through the
store's own statements (insert_exit_txs, start_exits), shaped as forged trees are: 64 leaves per round
tree of arity 4 (depth 4: one root, 4 and 16 shared inner txs, a leaf tx per exit), every exit in the
`processing` state. Then, per backend:
  load       ExitEngine.load(): every exit, its txs and their children into memory, as a new leader does
             before it may write (the takeover's own cost) and a standby does to serve reads;
  move 1 %   update_exits for 1 % of the exits changing state (a block confirming their txs), in one
             transaction, as a cycle stores them;
  errors     update_exits for every exit, an error each and no state change (a cycle's worst write);
  histories  load_histories of one page (200 exits), as a status listing with history streams it;
  refresh    ExitEngine.refresh() after a 1 % block: a standby's reload, reading only what can change;
  takeover   (PostgreSQL) a leader (its own Leadership and store) stores a 1 % block and dies (its lock
             connection closes, as when its process is killed); from then until the standby, whose view
             was fresh before that block and which tries the lock every 2.5 s (the default timeout's),
             holds the new term having read what the leader left: by a whole load (ExitEngine.load, as
             before) and by a refresh (ExitEngine.refresh, as now);
and the resident memory of this process after the load.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from harness import database, load_now, machine, parse_args

from exitd.engine.engine import ExitEngine
from exitd.engine.fee_policy import FeePolicy
from exitd.engine.records import encode_state
from exitd.engine.states import ExitState, ExitStateKind
from exitd.store.db import Store, upgrade
from exitd.store.exits import (
    ExitStart,
    ExitUpdate,
    StoredExitTx,
    insert_exit_txs,
    load_histories,
    start_exits,
    update_exits,
)
from exitd.store.leader import Leadership
from exitd.store.models import VtxoRow

Read = Callable[[], Awaitable[None]]

EXITS = 100_000
QUICK_EXITS = 5_000
LEAVES_PER_TREE = 64
BATCH = 5_000  # rows per transaction while filling
PAGE = 200
REPEATS = 3


def txid(*parts: int) -> str:
    return "".join(f"{p:08x}" for p in parts).ljust(64, "0")


def tree_txids(tree: int, leaf: int) -> tuple[str, ...]:
    """Root first: the tree's root, its inner txs on the way to `leaf`, the leaf's own tx."""
    return (
        txid(tree, 0),
        txid(tree, 1, leaf // 16),
        txid(tree, 2, leaf // 4),
        txid(tree, 3, leaf),
    )


async def fill(store: Store, exits: int) -> None:
    state = encode_state(ExitState(ExitStateKind.PROCESSING, 800_000))
    for first in range(0, exits, BATCH):
        ids = range(first, min(first + BATCH, exits))
        starts = [
            ExitStart(f"{txid(9, i)}:0", tree_txids(i // LEAVES_PER_TREE, i % LEAVES_PER_TREE)) for i in ids
        ]
        async with store.session() as session:
            session.add_all(
                VtxoRow(
                    vtxo_id=s.vtxo_id,
                    encoded=bytes(400),
                    amount_sat=20_000,
                    expiry_height=900_000,
                    exit_delta=144,
                    exit_depth=4,
                    policy_type="pubkey",
                    user_pubkey="02" + "11" * 32,
                    server_pubkey="03" + "22" * 32,
                    chain_anchor=s.txids[0] + ":0",
                    state="locked",
                    imported_at=0,
                )
                for s in starts
            )
            await session.flush()
            txs = {t: i for s in starts for i, t in enumerate(s.txids)}
            await insert_exit_txs(
                session,
                [StoredExitTx(t, bytes(150), 150, t, 1) for t in txs],
            )
            await start_exits(session, starts, (), state, "processing", "user", 0)


async def timed_write(store: Store, updates: list[ExitUpdate]) -> float:
    """Seconds to store `updates` in one transaction, as a cycle does."""
    began = time.perf_counter()
    async with store.session() as session:
        await update_exits(session, updates)
    return time.perf_counter() - began


def timed(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1000:8.0f} ms (median of {len(seconds)})"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def measure(name: str, url: str, exits: int) -> None:
    upgrade(url)
    store = Store(url)
    store.term = 1 if store.shared else None  # this process alone writes: it leads
    try:
        started = time.perf_counter()
        await fill(store, exits)
        print(f"{name}: {exits} exits stored in {time.perf_counter() - started:.0f} s; load {load_now()}")
        engine = ExitEngine(store, None, None, None, None, FeePolicy(), "regtest")  # type: ignore[arg-type]
        gc.collect()
        before = rss_mb()
        loads = []
        for _ in range(REPEATS):
            began = time.perf_counter()
            await engine.load()
            loads.append(time.perf_counter() - began)
        gc.collect()
        print(f"  load       {timed(loads)}  ({len(engine.exits)} exits, {len(engine.txs)} txs)")
        print(f"  memory     {rss_mb() - before:8.0f} MB resident for the loaded exits")
        moved = ExitState(ExitStateKind.AWAITING_DELTA, 800_001)
        ids = list(engine.exits)

        one_percent = []
        for r in range(REPEATS):
            chosen = ids[r::100]  # every hundredth exit: 1 %
            changes = [ExitUpdate(v, None, encode_state(moved), moved.kind.value) for v in chosen]
            one_percent.append(await timed_write(store, changes))
        print(f"  move 1 %   {timed(one_percent)}  ({len(chosen)} exits change state)")
        every = [ExitUpdate(v, '{"kind":"InternalError"}') for v in ids]
        errors = [await timed_write(store, every) for _ in range(REPEATS)]
        print(f"  errors     {timed(errors)}  (every exit)")
        pages = []
        for r in range(REPEATS):
            began = time.perf_counter()
            async with store.session() as session:
                await load_histories(session, ids[r * PAGE : (r + 1) * PAGE])
            pages.append(time.perf_counter() - began)
        print(f"  histories  {timed(pages)}  (a page of {PAGE})", flush=True)
        refreshes = []
        await engine.refresh()  # the rows every error was rewritten in
        for r in range(REPEATS):
            await timed_write(store, block_moving(ids, r, ExitState(ExitStateKind.PROCESSING, 800_002 + r)))
            began = time.perf_counter()
            await engine.refresh()
            refreshes.append(time.perf_counter() - began)
        print(f"  refresh    {timed(refreshes)}  (after a block moving 1 %)", flush=True)
        if store.shared:
            for name, read in (("whole load", engine.load), ("refresh", engine.refresh)):
                await takeovers(url, engine, ids, name, read)
    finally:
        await store.close()


def block_moving(ids: list[str], r: int, state: ExitState) -> list[ExitUpdate]:
    """1 % of the exits (every hundredth, from the r-th) change to `state`."""
    return [ExitUpdate(v, None, encode_state(state), state.kind.value) for v in ids[r::100]]


async def takeovers(url: str, standby: ExitEngine, ids: list[str], name: str, read: Read) -> None:
    """REPEATS takeovers by `standby` (its view fresh) of a leader that stores a 1 % block and dies."""
    timeout = 15.0  # database.failover_timeout's default: a try for the lock every 2.5 s
    seconds: list[float] = []
    reads: list[float] = []

    async def taking_over() -> None:
        began = time.perf_counter()
        await read()
        reads.append(time.perf_counter() - began)

    for r in range(REPEATS):
        await standby.refresh()
        leader_store = Store(url)
        leader = Leadership(leader_store, "http://127.0.0.1:1", timeout)
        stopping = asyncio.Event()
        assert await leader.acquire(stopping, nothing, nothing)
        state = ExitState(ExitStateKind.AWAITING_DELTA, 800_010 + r)
        await timed_write(leader_store, block_moving(ids, r + 50, state))
        heir = Leadership(standby.store, "http://127.0.0.1:2", timeout)
        standing_by = asyncio.create_task(heir.acquire(stopping, nothing, taking_over))
        await asyncio.sleep(timeout / 6 * 1.5)  # the kill falls midway between two tries: the mean wait
        await leader.close()  # the leader's process dies: its lock connection ends
        died = time.perf_counter()
        assert await standing_by
        seconds.append(time.perf_counter() - died)
        assert all(standby.exits[v].state == state for v in ids[r + 50 :: 100])
        standby.store.term = None
        await heir.close()
        await leader_store.close()
    print(
        f"  takeover   {timed(seconds)}  by a {name}: of which reading {timed(reads).strip()}",
        flush=True,
    )


async def nothing() -> None:
    return None


async def main() -> None:
    args = parse_args(__doc__ or "", backends=True)
    exits = QUICK_EXITS if args.quick else EXITS
    print(machine(), flush=True)
    if not args.postgresql:  # --postgresql: that backend alone
        with TemporaryDirectory(prefix="exitd-store-scale-") as tmp:
            await measure("SQLite", f"sqlite+aiosqlite:///{Path(tmp) / 'exitd.sqlite3'}", exits)
    with database(True) as new_database:
        await measure("PostgreSQL", new_database(), exits)


if __name__ == "__main__":
    asyncio.run(main())
