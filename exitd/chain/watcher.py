"""The block watcher: runs a cycle on every new block, on a timer, and when woken.

It long-polls bitcoind for the next block, so a block is acted on within milliseconds of its arrival; a
reorg to another chain of the same height is seen by the next poll. Whoever waits for "the next block's
cycle" (a progress request that found nothing to do) waits on `wait_for_block`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from exitd.chain.blocks import best_block, wait_for_height
from exitd.chain.rpc import BitcoinRpc, RpcError
from exitd.log import event, get_logger

log = get_logger("chain.watcher")


class BlockWatcher:
    def __init__(self, rpc: BitcoinRpc) -> None:
        self.rpc = rpc
        # Set to have the next cycle run now (new exits to look at).
        self.wakeup = asyncio.Event()
        # Notified once the cycle of a new block is done.
        self.new_block = asyncio.Condition()

    async def run(
        self,
        stopping: asyncio.Event,
        cycle: Callable[[], Awaitable[bool]],
        poll_interval: float = 1.0,
        cycle_interval: float = 30.0,
    ) -> None:
        """Run `cycle` on every new block (waited for, and polled every `poll_interval`), every
        `cycle_interval` and when woken, until `stopping`. A cycle that fails (returns False) is run again
        at the next poll, and the block is only announced once a cycle on it succeeded."""
        best: str | None = None
        height = 0
        last_cycle = 0.0
        while not stopping.is_set():
            try:
                tip = await best_block(self.rpc)
                height = tip.height
                due = (
                    tip.hash != best or self.wakeup.is_set() or time.monotonic() - last_cycle > cycle_interval
                )
                if due:
                    self.wakeup.clear()
                    if await cycle():
                        last_cycle = time.monotonic()
                        if tip.hash != best:
                            best = tip.hash
                            async with self.new_block:
                                self.new_block.notify_all()
            except RpcError as e:
                event(log, logging.WARNING, "cycle_failed", error=str(e))
            waiters = {
                asyncio.ensure_future(self.wakeup.wait()),
                asyncio.ensure_future(stopping.wait()),
                asyncio.ensure_future(wait_for_height(self.rpc, height + 1, poll_interval)),
            }
            await asyncio.wait(waiters, timeout=poll_interval, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def wait_for_block(self, timeout: float) -> None:
        """Return after the next new block's cycle, or after `timeout` s."""
        async with self.new_block:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.new_block.wait(), timeout)
