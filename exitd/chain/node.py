"""Start-up checks of the node exitd talks to: a version with TRUC, P2A and `submitpackage`, on our chain."""

from __future__ import annotations

from dataclasses import dataclass

from exitd.chain.rpc import BitcoinRpc, RetryPolicy

MIN_NODE_VERSION = 29_00_00

# bitcoind's `chain` names for each network exitd accepts; testnet3 and testnet4 share their addresses.
CHAIN_NAMES: dict[str, tuple[str, ...]] = {
    "mainnet": ("main",),
    "testnet": ("test", "testnet4"),
    "signet": ("signet",),
    "regtest": ("regtest",),
}


class NodeMismatch(Exception):
    """The node is reachable but unfit: too old, or on another chain than the config says."""


@dataclass(frozen=True)
class NodeInfo:
    version: int
    subversion: str
    chain: str
    blocks: int


def format_version(version: int) -> str:
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


async def check_node(rpc: BitcoinRpc, network: str, retry: RetryPolicy | None = None) -> NodeInfo:
    netinfo = await rpc.call("getnetworkinfo", retry=retry)
    chaininfo = await rpc.call("getblockchaininfo", retry=retry)
    info = NodeInfo(
        version=int(netinfo["version"]),
        subversion=str(netinfo.get("subversion", "")),
        chain=str(chaininfo["chain"]),
        blocks=int(chaininfo["blocks"]),
    )
    if info.version < MIN_NODE_VERSION:
        raise NodeMismatch(
            f"bitcoind {format_version(info.version)} is too old: exitd needs >= "
            f"{format_version(MIN_NODE_VERSION)} (TRUC transactions, pay-to-anchor, submitpackage)"
        )
    if info.chain not in CHAIN_NAMES[network]:
        raise NodeMismatch(
            f"bitcoind is on chain '{info.chain}' but exitd is configured for network '{network}'"
        )
    return info
