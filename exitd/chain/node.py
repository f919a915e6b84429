"""Start-up checks of the node exitd talks to, and what it says about the node in one line.

exitd needs: Bitcoin Core >= 29 (TRUC transactions, pay-to-anchor, `submitpackage`), on the configured
chain, with wallets enabled (its coins live in a watch-only wallet of bitcoind). It does not need a tx
index, and a pruned node serves it as long as exitd is not down longer than the node keeps blocks
(exitd.chain.locator). A node that lacks something needed is a start-up error naming every lack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exitd.chain.rpc import BitcoinRpc, RetryPolicy, RpcError, RpcMethodNotFound

MIN_NODE_VERSION = 29_00_00

# bitcoind's `chain` names for each network exitd accepts; testnet3 and testnet4 share their addresses.
CHAIN_NAMES: dict[str, tuple[str, ...]] = {
    "mainnet": ("main",),
    "testnet": ("test", "testnet4"),
    "signet": ("signet",),
    "regtest": ("regtest",),
}


class NodeMismatch(Exception):
    """The node is reachable but unfit: too old, on another chain than the config says, or without
    wallets."""


@dataclass(frozen=True)
class NodeInfo:
    version: int
    subversion: str
    chain: str
    blocks: int
    wallets: bool = True
    # The lowest height whose block the node still stores, on a pruned node.
    prune_height: int | None = None
    # none | synced | building: exitd does not need one.
    txindex: str = "none"
    initial_download: bool = False

    @property
    def pruned(self) -> bool:
        return self.prune_height is not None

    def summary(self) -> dict[str, Any]:
        """What exitd found of each thing it needs, for the start-up line and the node status."""
        return {
            "version": format_version(self.version),
            "chain": self.chain,
            "height": self.blocks,
            "wallets": "enabled" if self.wallets else "disabled",
            "pruned": self.pruned,
            "prune_height": self.prune_height,
            "txindex": self.txindex,
            "initial_block_download": self.initial_download,
        }


def format_version(version: int) -> str:
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


def lacks(info: NodeInfo, network: str) -> list[str]:
    """What the node lacks that exitd needs, each said with what to do about it."""
    problems = []
    if info.version < MIN_NODE_VERSION:
        problems.append(
            f"bitcoind {format_version(info.version)} is too old: exitd needs >= "
            f"{format_version(MIN_NODE_VERSION)} (TRUC transactions, pay-to-anchor, submitpackage)"
        )
    if info.chain not in CHAIN_NAMES[network]:
        problems.append(
            f"bitcoind is on chain '{info.chain}' but exitd is configured for network '{network}'"
        )
    if not info.wallets:
        problems.append(
            "bitcoind has no wallet support (started with -disablewallet): exitd keeps its coins in a "
            "watch-only wallet inside bitcoind; restart bitcoind with disablewallet=0"
        )
    return problems


async def check_node(rpc: BitcoinRpc, network: str, retry: RetryPolicy | None = None) -> NodeInfo:
    """The node's facts; NodeMismatch naming everything it lacks."""
    info = await read_node(rpc, retry)
    problems = lacks(info, network)
    if problems:
        raise NodeMismatch("; ".join(problems))
    return info


async def read_node(rpc: BitcoinRpc, retry: RetryPolicy | None = None) -> NodeInfo:
    """The node's facts, in one round trip."""
    calls: list[tuple[str, list[Any]]] = [
        ("getnetworkinfo", []),
        ("getblockchaininfo", []),
        ("getindexinfo", ["txindex"]),
        ("listwallets", []),
    ]
    netinfo, chaininfo, indexes, wallets = await rpc.batch(calls, retry=retry)
    for answer in (netinfo, chaininfo):
        if isinstance(answer, RpcError):
            raise answer
    index = indexes.get("txindex") if isinstance(indexes, dict) else None
    return NodeInfo(
        version=int(netinfo["version"]),
        subversion=str(netinfo.get("subversion", "")),
        chain=str(chaininfo["chain"]),
        blocks=int(chaininfo["blocks"]),
        wallets=not isinstance(wallets, RpcMethodNotFound),
        prune_height=int(chaininfo.get("pruneheight", 0)) if chaininfo.get("pruned") else None,
        txindex="none" if index is None else "synced" if index.get("synced") else "building",
        initial_download=bool(chaininfo.get("initialblockdownload", False)),
    )
