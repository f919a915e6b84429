"""The engine's background loop against a real node: a block is acted on when bitcoind connects it, not at
the next poll."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from exitd.chain.fees import FeeEstimator
from exitd.chain.rpc import BitcoinRpc, RpcCredentials
from exitd.engine.engine import ExitEngine
from exitd.engine.fee_policy import FeePolicy
from exitd.regtest.node import RegtestNode
from exitd.store.db import Store, upgrade
from exitd.wallet.seed import WalletSeed
from exitd.wallet.vtxos import VtxoBook

pytestmark = pytest.mark.bitcoind

# Far longer than the test may take: a cycle within it can only come from the block itself.
POLL_SECONDS = 60.0


async def test_a_new_block_starts_a_cycle_at_once_not_at_the_next_poll(
    tmp_path: Path, bitcoind: RegtestNode
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'exitd.sqlite3'}"
    upgrade(url)
    store = Store(url)
    rpc = BitcoinRpc(bitcoind.rpc_url, RpcCredentials(cookie_file=bitcoind.cookie_file))
    vtxos = VtxoBook(store, rpc, WalletSeed(tmp_path / "mnemonic"), key_search_limit=10)
    engine = ExitEngine(store, rpc, FeeEstimator(rpc, 2000), vtxos, None, FeePolicy(), "regtest")
    stopping = asyncio.Event()
    loop = asyncio.create_task(engine.run(stopping, poll_interval=POLL_SECONDS, cycle_interval=POLL_SECONDS))
    try:
        while engine.cycles < 1:  # the first cycle, at start
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the loop now waits for a block
        mined = time.monotonic()
        await asyncio.to_thread(bitcoind.mine, 1)
        while engine.cycles < 2:
            assert time.monotonic() - mined < 5.0, "no cycle for the new block"
            await asyncio.sleep(0.01)
    finally:
        stopping.set()
        engine.wakeup.set()
        await asyncio.wait_for(loop, 10)
        await rpc.close()
        await store.close()
