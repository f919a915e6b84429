"""Change scripts: every output back to the wallet pays to a fresh one, which bitcoind's watch-only wallet
hands out (the next index of the account's change descriptor) and watches from then on.

Some are fetched between blocks (ChangeScripts.prepare): after a block bitcoind answers a wallet call only
once its wallet has taken the block in, and the eighty change addresses of a block's children would cost a
tenth of a second more on the way from that block to its packages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from exitd.chain.rpc import RpcError
from exitd.log import event, get_logger
from exitd.wallet.address import decode_address
from exitd.wallet.watchonly import WatchOnlyWallet

log = get_logger("wallet")

# Change scripts fetched ahead, at most: half bitcoind's default key lookahead (-keypool=1000), and never
# more than half the wallet's own. A restart forgets the unused ones, and a restore from the mnemonic finds
# coins past such a gap only while it is narrower than the lookahead (prepare refills only after a use, so
# gaps never add up).
MAX_CHANGE_RESERVE = 500


class ChangeScripts:
    def __init__(self, watch_only: WatchOnlyWallet, network: str, lock: asyncio.Lock) -> None:
        """`lock`: the wallet's coin lock, held while the reserve is refilled."""
        self.watch_only = watch_only
        self.network = network
        self._lock = lock
        # Fetched and not used yet, oldest first; and whether one was used since the last refill.
        self._reserve: deque[bytes] = deque()
        self._used = False

    @property
    def reserve(self) -> tuple[bytes, ...]:
        return tuple(self._reserve)

    async def take(self, n: int) -> list[bytes]:
        """`n` fresh change scripts: the reserve's first, then the rest from bitcoind in one round trip."""
        taken = [self._reserve.popleft() for _ in range(min(n, len(self._reserve)))]
        self._used = self._used or n > 0
        return taken + await self._fetch(n - len(taken))

    async def prepare(self, n: int) -> int:
        """Fetch ahead so that the next `n` scripts taken (at most MAX_CHANGE_RESERVE, and half the change
        keys bitcoind keeps ahead) need no round trip; returns how many were fetched. Nothing is fetched
        before a script was used since the last refill."""
        async with self._lock:
            if not self._used or n <= len(self._reserve):
                return 0
            info = await self.watch_only.call("getwalletinfo")
            lookahead = int(info.get("keypoolsize_hd_internal", info.get("keypoolsize", 0)))
            want = min(n, MAX_CHANGE_RESERVE, lookahead // 2) - len(self._reserve)
            fetched = await self._fetch(want)
            self._reserve.extend(fetched)
            self._used = False  # looked: nothing more until the next use, even when nothing was fetched
        event(log, logging.DEBUG, "change_prepared", fetched=len(fetched), reserve=len(self._reserve))
        return len(fetched)

    async def _fetch(self, n: int) -> list[bytes]:
        if n <= 0:
            return []
        answers = await self.watch_only.batch([("getrawchangeaddress", ["bech32m"])] * n)
        scripts = []
        for answer in answers:
            if isinstance(answer, RpcError):
                raise answer
            scripts.append(decode_address(str(answer), self.network))
        return scripts
