"""REST load on a running daemon: many clients asking for status, progress and imports at once while
blocks arrive, each request timed; and what the daemon says of its cycles afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from exitd.regtest.node import RegtestNode

# What a barkd client polls while exits run: the three operations the load is made of.
STATUS = ("GET", "/api/v1/exits/status", None)
PROGRESS = ("POST", "/api/v1/exits/progress", {})


@dataclass
class LoadResult:
    """Seconds each request took, by operation, and every failure (a status other than 200, or no answer)."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    blocks: int = 0

    def all_latencies(self) -> list[float]:
        return [t for times in self.latencies.values() for t in times]


def requests_of(import_hexes: Sequence[str]) -> list[tuple[str, str, Any]]:
    """The mix each client cycles through: status, progress and an import in turn (importing a VTXO
    already imported is idempotent, so it can repeat for as long as the load lasts)."""
    if not import_hexes:
        return [STATUS, PROGRESS]
    return [
        request
        for h in import_hexes
        for request in (STATUS, PROGRESS, ("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [h]}))
    ]


async def _client(
    session: aiohttp.ClientSession,
    base_url: str,
    mix: Sequence[tuple[str, str, Any]],
    offset: int,
    until: float,
    result: LoadResult,
) -> None:
    i = offset
    while time.monotonic() < until:
        method, path, body = mix[i % len(mix)]
        i += 1
        started = time.monotonic()
        try:
            async with session.request(method, base_url + path, json=body) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as e:
            result.errors.append(f"{method} {path}: {type(e).__name__} {e}")
            continue
        result.latencies.setdefault(f"{method} {path}", []).append(time.monotonic() - started)
        if status != 200:
            result.errors.append(f"{method} {path}: {status}")


async def _miner(node: RegtestNode, interval: float, until: float, result: LoadResult) -> None:
    while time.monotonic() + interval < until:
        await asyncio.sleep(interval)
        await asyncio.to_thread(node.mine, 1)
        result.blocks += 1


async def run_load(
    port: int,
    token: str,
    node: RegtestNode,
    clients: int,
    seconds: float,
    block_interval: float,
    import_hexes: Sequence[str] = (),
) -> LoadResult:
    """`clients` concurrent keep-alive clients for `seconds`, a block mined every `block_interval`."""
    result = LoadResult()
    until = time.monotonic() + seconds
    mix = requests_of(import_hexes)
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:
        base_url = f"http://127.0.0.1:{port}"
        await asyncio.gather(
            _miner(node, block_interval, until, result),
            *(_client(session, base_url, mix, n, until, result) for n in range(clients)),
        )
    return result
