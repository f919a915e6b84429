"""Where tracked txs were mined, learnt from the blocks as they arrive: no tx index needed.

Bitcoin Core indexes txs by id only with -txindex, which is off by default, takes hours to build and is
impossible on a pruned node. What every node keeps is enough for exitd: each new block is read once (its
txids, getblock verbosity 1) and matched against the txids exitd watches, and the block of each match is
kept. The mempool and the UTXO set answer the rest (exitd.chain.view). The height read up to and the
watched txids with their blocks are stored, so a restart reads only the blocks it missed; a reorg is found
by comparing that height's stored hash with the node's, and the blocks above the fork are read again.

A pruned node serves the blocks it still keeps: exitd follows it as long as it is not down longer than
the node keeps blocks. When blocks it needs are gone, every snapshot fails with BlocksPruned, naming the
heights and what to do, until they are back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from exitd.chain.rpc import BitcoinRpc, RpcError, RpcInvalidParameter

# Blocks asked for in one round trip while catching up (a mainnet block at verbosity 1 is ~100-300 kB).
READ_CHUNK = 16
# A watched txid nobody has asked about for this many blocks is forgotten.
WATCH_BLOCKS = 1008
# Blocks read between two stores of the height read up to, when nothing else changed.
SAVE_EVERY = 6


@dataclass(frozen=True)
class BlockRef:
    height: int
    hash: str


# A block as the store keeps it: (height, hash).
Position = tuple[int, str]


class LocatorStore(Protocol):
    """Persistence of the locator's state (exitd.store.locations over SQLite): the block read up to, and
    every watched txid with the block it was found in."""

    async def load(self) -> tuple[Position | None, dict[str, Position | None]]: ...

    async def save(
        self, processed: Position, changed: Mapping[str, Position | None], forgotten: Collection[str]
    ) -> None: ...


class MemoryLocatorStore:
    """Keeps nothing across runs: for tools and tests that have no datadir."""

    async def load(self) -> tuple[Position | None, dict[str, Position | None]]:
        return None, {}

    async def save(
        self, processed: Position, changed: Mapping[str, Position | None], forgotten: Collection[str]
    ) -> None:
        return None


def _ref(position: Position | None) -> BlockRef | None:
    return BlockRef(*position) if position is not None else None


def _position(block: BlockRef | None) -> Position | None:
    return (block.height, block.hash) if block is not None else None


class BlocksPruned(RpcError):
    """Blocks exitd has not read yet are gone from the (pruned) node: a tx of ours mined in one of them
    would stay unseen, so nothing is decided until they are back."""

    def __init__(self, first: int, last: int, method: str = "getblock") -> None:
        super().__init__(
            f"bitcoind has pruned blocks {first}..{last}, which exitd has not read yet (it was stopped for "
            f"longer than the node keeps blocks); exits cannot progress until it can read them. Fetch them "
            f"back with `bitcoin-cli getblockfrompeer <hash> <peer id>` for each height (hash from "
            f"`bitcoin-cli getblockhash <height>`), or restart bitcoind with a larger -prune and -reindex",
            method,
        )
        self.first = first
        self.last = last


class ChainMoved(RpcError):
    """The node's chain changed while exitd was reading it (a reorg mid-read): the snapshot is retried."""


def _raise_if_error(answer: Any) -> Any:
    if isinstance(answer, RpcError):
        raise answer
    return answer


class TxLocator:
    """The blocks of watched txids, following the node's chain block by block."""

    def __init__(self, rpc: BitcoinRpc, store: LocatorStore | None = None) -> None:
        self.rpc = rpc
        self.store: LocatorStore = store if store is not None else MemoryLocatorStore()
        self.processed: BlockRef | None = None
        self.found: dict[str, BlockRef] = {}
        # Watched txid -> the tip height when it was last asked about.
        self.watched: dict[str, int] = {}
        self.lock = asyncio.Lock()
        self._loaded = False
        # Watched txids whose block changed (None: not in a block) since the last save.
        self._changed: dict[str, BlockRef | None] = {}
        self._saved: BlockRef | None = None
        # The horizon (height read up to - WATCH_BLOCKS) from which unasked txids are next looked for.
        self._forget_at = -WATCH_BLOCKS
        # Blocks read since the process started (the benchmarks read it).
        self.blocks_read = 0
        # The height of the highest block kept by each reorg found, oldest first (never shortened: each
        # reader remembers how far it read). Blocks above the stored height read up to count as reorged
        # at load: they may have changed while exitd was stopped.
        self.forks: list[int] = []
        # Txids never forgotten however long nobody asks about them (the engine's resting exits').
        self.kept: Container[str] = frozenset()

    async def load(self) -> None:
        if self._loaded:
            return
        processed, txs = await self.store.load()
        self.processed = _ref(processed)
        height = self.processed.height if self.processed else 0
        if self.processed is not None:
            self.forks.append(height)
        self.watched = dict.fromkeys(txs, height)
        self.found = {txid: BlockRef(*block) for txid, block in txs.items() if block is not None}
        self._saved = self.processed
        self._loaded = True

    async def pruned_gap(self, prune_height: int | None) -> BlocksPruned | None:
        """The blocks after the last one read that the node has pruned, when anything is watched."""
        async with self.lock:
            await self.load()
            if prune_height is None or self.processed is None or not self.watched:
                return None
            if self.processed.height + 1 >= prune_height:
                return None
            return BlocksPruned(self.processed.height + 1, prune_height - 1)

    def located(self, txid: str) -> BlockRef | None:
        return self.found.get(txid)

    def place(self, txid: str, block: BlockRef) -> None:
        """A watched tx found mined in an earlier block by other means (the UTXO set)."""
        self.found[txid] = block
        self._changed[txid] = block

    async def flush(self) -> None:
        await self._save()

    def probes(self) -> list[tuple[str, list[object]]]:
        """Calls to put in the snapshot's first batch, just before its getblockchaininfo: the hashes at the
        processed height and the next, so that one new block on the same chain needs no extra round trip."""
        if self.processed is None:
            return []
        return [("getblockhash", [self.processed.height]), ("getblockhash", [self.processed.height + 1])]

    def probed_hashes(self, answers: Sequence[Any]) -> dict[int, str]:
        if self.processed is None:
            return {}
        heights = (self.processed.height, self.processed.height + 1)
        return {h: str(a) for h, a in zip(heights, answers, strict=True) if not isinstance(a, RpcError)}

    async def catch_up(
        self,
        tip: BlockRef,
        txids: Iterable[str],
        known: Mapping[int, str],
        prune_height: int | None,
        extra: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> tuple[list[str], list[Any]]:
        """Read every block up to `tip` not read yet (after a reorg, those above the fork again), watching
        `txids` from now on. `known`: hashes of the node's chain already asked this snapshot. `extra`
        calls ride in the last round trip. Returns the txids a reorg took out of the chain, and `extra`'s
        answers."""
        height = tip.height
        for txid in txids:
            if txid not in self.watched:
                self._changed[txid] = self.found.get(txid)
            self.watched[txid] = height
        if self.processed is None:
            # A new datadir: start from the tip (nothing watched can be in earlier blocks it has not seen
            # through the mempool or the UTXO set).
            self.processed = tip
            await self._save()
            return [], await self.rpc.batch(extra)
        if tip.hash == self.processed.hash:
            await self._save()
            return [], await self.rpc.batch(extra)
        hashes = dict(known)
        if hashes.get(self.processed.height) == self.processed.hash:
            fork = self.processed
        else:
            fork = await self._fork_point()
            self.forks.append(fork.height)
        if not self.watched:
            # Nothing to look for in the blocks: nothing to read.
            self.processed = tip
            await self._save()
            return [], await self.rpc.batch(extra)
        reorged = [txid for txid, block in self.found.items() if block.height > fork.height]
        for txid in reorged:
            del self.found[txid]
            self._changed[txid] = None
        missing = [h for h in range(fork.height + 1, tip.height) if h not in hashes]
        hashes[tip.height] = tip.hash
        replies = await self.rpc.batch(("getblockhash", [h]) for h in missing)
        for h, answer in zip(missing, replies, strict=True):
            if isinstance(answer, RpcInvalidParameter):
                raise ChainMoved(f"block {h} left the chain while exitd read it", "getblockhash")
            hashes[h] = str(_raise_if_error(answer))
        first = fork.height + 1
        if prune_height is not None and first < prune_height and first <= tip.height:
            raise BlocksPruned(first, min(prune_height - 1, tip.height))
        reads = [BlockRef(h, hashes[h]) for h in range(first, tip.height + 1)]
        self.processed = fork
        answers: list[Any] = []
        for start in range(0, max(len(reads), 1), READ_CHUNK):
            chunk = reads[start : start + READ_CHUNK]
            last = start + READ_CHUNK >= len(reads)
            calls: list[tuple[str, Sequence[Any]]] = [("getblock", [b.hash, 1]) for b in chunk]
            replies = await self.rpc.batch(calls + list(extra if last else ()))
            self._apply(chunk, replies[: len(chunk)])
            await self._save()
            if last:
                answers = replies[len(chunk) :]
        return reorged, answers

    def _apply(self, chunk: Sequence[BlockRef], blocks: Sequence[Any]) -> None:
        for ref, block in zip(chunk, blocks, strict=True):
            if isinstance(block, RpcError):
                if "pruned" in block.message:
                    raise BlocksPruned(ref.height, ref.height)
                raise block
            assert self.processed is not None
            if block.get("previousblockhash") != self.processed.hash or int(block["height"]) != ref.height:
                raise ChainMoved(f"block {ref.height} changed while exitd read it", "getblock")
            for txid in block["tx"]:
                if txid in self.watched:
                    self.found[txid] = ref
                    self._changed[txid] = ref
            self.processed = ref
            self.blocks_read += 1

    async def _fork_point(self) -> BlockRef:
        """The newest block of ours still in the node's active chain (one round trip per block back)."""
        assert self.processed is not None
        current = self.processed.hash
        while True:
            header = _raise_if_error(await self.rpc.call("getblockheader", current))
            if int(header["confirmations"]) >= 1:
                return BlockRef(int(header["height"]), current)
            current = str(header["previousblockhash"])

    async def _save(self) -> None:
        assert self.processed is not None
        horizon = self.processed.height - WATCH_BLOCKS
        forgotten = []
        if horizon >= self._forget_at:
            # Looked for every SAVE_EVERY blocks, not every save: it goes through every watched txid
            # (a hundred thousand exits' txs), and a txid forgotten a few blocks late costs nothing.
            kept = self.kept
            forgotten = [t for t, asked in self.watched.items() if asked < horizon and t not in kept]
            self._forget_at = horizon + SAVE_EVERY
        for txid in forgotten:
            del self.watched[txid]
            self.found.pop(txid, None)
            self._changed.pop(txid, None)
        # The block read up to alone is stored every SAVE_EVERY blocks (a commit is an fsync); a restart
        # from an older one reads a few blocks again, and finds them where it found them.
        ahead = self.processed.height - self._saved.height if self._saved is not None else SAVE_EVERY
        if self._changed or forgotten or (self.processed != self._saved and not 0 < ahead < SAVE_EVERY):
            changed = {txid: _position(block) for txid, block in self._changed.items()}
            await self.store.save((self.processed.height, self.processed.hash), changed, forgotten)
            self._changed.clear()
            self._saved = self.processed
