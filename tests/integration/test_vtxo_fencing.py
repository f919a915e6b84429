"""VTXO writes are the leader's alone on a shared PostgreSQL database, fenced by its term like exit writes:
a deposed leader that still runs (its import through the VTXO book, the REST API and `exitd import`, a VTXO
marked gone, its barkd follower's sync) is refused with NotLeader, in the answer a standby gives, and
stores nothing, while the new leader's rows stay. One leader alone imports, follows barkd and marks VTXOs
gone as before, on PostgreSQL and on SQLite. Real bitcoind (imports are checked against it), a real
PostgreSQL, the real aiohttp server over loopback, and barkd's stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from exitd.api.app import create_app
from exitd.api.context import Services
from exitd.api.token import encode_token
from exitd.chain.rpc import BitcoinRpc, RpcCredentials
from exitd.cli.main import EXIT_FAILURE
from exitd.config import Config
from exitd.engine.alerts import Alerts, WebhookSettings
from exitd.regtest.forge import Forge, ForgedVtxo
from exitd.regtest.node import RegtestNode, free_port
from exitd.source.barkd import BarkdClient, BarkdFollower, SyncPlan
from exitd.store.db import Store, upgrade
from exitd.store.errors import NotLeader
from exitd.store.leader import read_leader, take_term
from exitd.store.vtxos import StoredVtxo, VtxoState
from exitd.wallet.seed import WalletSeed
from exitd.wallet.vtxos import VtxoBook
from tests.support.barkd import TOKEN, BarkdStandIn, stand_in_served

pytestmark = pytest.mark.bitcoind

NEW_REST = "http://127.0.0.1:2"
DEPOSED = f"this exitd led in term 1 and was deposed; the leader is new:2 (term 2, REST {NEW_REST})"
SECRET = b"\x07" * 32
# Seconds between the syncs of a follower whose loop a test runs: it syncs at once, then waits this long.
SYNC_INTERVAL = 60.0


@dataclass(frozen=True)
class Daemon:
    """What of one daemon the VTXO writes go through: its store and its VTXO book."""

    store: Store
    vtxos: VtxoBook

    def follower(self, barkd: BarkdStandIn) -> BarkdFollower:
        return BarkdFollower(
            BarkdClient(barkd.url, TOKEN), self.vtxos, Alerts(WebhookSettings()), SYNC_INTERVAL
        )

    async def sync(self, barkd: BarkdStandIn) -> SyncPlan | None:
        """One sync of a follower of `barkd`, as the daemon's loop makes it."""
        follower = self.follower(barkd)
        try:
            return await follower.sync()
        finally:
            await follower.client.close()

    async def rows(self) -> dict[str, StoredVtxo]:
        return {row.vtxo_id: row for row in await self.vtxos.list(include_spent=True)}


@contextlib.asynccontextmanager
async def daemon_on(url: str, node: RegtestNode, seed: WalletSeed) -> AsyncIterator[Daemon]:
    store = Store(url)
    rpc = BitcoinRpc(node.rpc_url, RpcCredentials(cookie_file=node.cookie_file))
    try:
        yield Daemon(store, VtxoBook(store, rpc, seed, key_search_limit=2))
    finally:
        await rpc.close()
        await store.close()


@pytest.fixture
def seed(tmp_path: Path) -> WalletSeed:
    """The one wallet every daemon of a test shares."""
    seed = WalletSeed(tmp_path / "mnemonic")
    seed.create()
    return seed


@pytest.fixture
def boards(bitcoind: RegtestNode) -> list[ForgedVtxo]:
    forge = Forge(bitcoind)
    return [forge.board(50_000 + 1_000 * i) for i in range(3)]


@pytest.fixture
def barkd() -> Iterator[BarkdStandIn]:
    yield from stand_in_served("0.6.0")


@pytest.fixture
async def deposed(
    postgres_url: str, bitcoind: RegtestNode, seed: WalletSeed
) -> AsyncIterator[tuple[Daemon, Daemon]]:
    """Two daemons on one database: `old` led in term 1 and still runs, deposed by `new` (term 2)."""
    async with daemon_on(postgres_url, bitcoind, seed) as old, daemon_on(postgres_url, bitcoind, seed) as new:
        old.store.term = await take_term(old.store, "old:1", "http://127.0.0.1:1")
        new.store.term = await take_term(new.store, "new:2", NEW_REST)
        yield old, new


@contextlib.asynccontextmanager
async def serving(daemon: Daemon, datadir: Path) -> AsyncIterator[int]:
    """The daemon's REST API on a loopback port (yielded), its token in `datadir` for the CLI."""
    datadir.mkdir()
    (datadir / "auth_token").write_text(encode_token(SECRET) + "\n")
    services = {f.name: None for f in fields(Services)}
    services.update(config=Config(), store=daemon.store, vtxos=daemon.vtxos)
    runner = web.AppRunner(create_app(Services(**services), SECRET))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def post(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {encode_token(SECRET)}"}
    async with (
        aiohttp.ClientSession(headers=headers) as client,
        client.post(f"http://127.0.0.1:{port}{path}", json=body) as response,
    ):
        return response.status, await response.json()


async def exitd_cli(datadir: Path, port: int, *args: str) -> tuple[int, str]:
    """`exitd <args>` against the daemon on `port`: its exit code and what it printed on stderr."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "exitd.cli", *args, "--datadir", str(datadir), "--rest-port", str(port)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_a_deposed_leaders_import_and_gone_are_refused_and_store_nothing(
    deposed: tuple[Daemon, Daemon], boards: list[ForgedVtxo]
) -> None:
    old, new = deposed
    kept, refused, _ = boards
    (imported,) = await new.vtxos.import_vtxos([kept.hex])

    with pytest.raises(NotLeader) as answer:
        await old.vtxos.import_vtxos([refused.hex])
    assert str(answer.value) == DEPOSED
    with pytest.raises(NotLeader, match="deposed"):  # protecting one already stored is a write too
        await old.vtxos.import_vtxos([kept.hex], protect=True)
    with pytest.raises(NotLeader, match="deposed"):
        await old.vtxos.mark_gone(imported.vtxo_id)
    # Stood by, as a deposed leader does once it notices: refused the same way, naming the leader.
    old.store.term, old.store.leader = None, await read_leader(old.store)
    with pytest.raises(NotLeader, match=r"this exitd is a standby .*; the leader is new:2 \(term 2"):
        await old.vtxos.import_vtxos([refused.hex])

    assert list(await new.rows()) == [imported.vtxo_id]
    assert (await old.rows()) == (await new.rows())  # reads stay open to every daemon
    row = (await new.rows())[imported.vtxo_id]
    assert row.state is VtxoState.SPENDABLE and not row.protect and row.gone_at is None
    assert row.imported_at == imported.imported_at


async def test_a_deposed_leader_answers_rest_and_the_cli_as_a_standby_does(
    deposed: tuple[Daemon, Daemon], boards: list[ForgedVtxo], tmp_path: Path
) -> None:
    """Its stale term lets a write past the standby's refusal of writes; the fenced write itself is
    refused, and the error table answers it with barkd's error shape, naming the leader."""
    old, new = deposed
    kept, refused, _ = boards
    (imported,) = await new.vtxos.import_vtxos([kept.hex])
    async with serving(old, tmp_path / "old") as port:
        status, body = await post(port, "/api/v1/wallet/import-vtxo", {"vtxos": [refused.hex]})
        assert (status, body) == (503, {"message": DEPOSED})
        status, body = await post(port, f"/api/v1/wallet/vtxos/{imported.vtxo_id}/gone")
        assert (status, body) == (503, {"message": DEPOSED})
        code, stderr = await exitd_cli(tmp_path / "old", port, "import", refused.hex, "--protect")
        assert (code, stderr) == (EXIT_FAILURE, f"exitd: {DEPOSED} (HTTP 503)\n")

    assert list(await new.rows()) == [imported.vtxo_id]
    row = (await new.rows())[imported.vtxo_id]
    assert not row.protect and row.gone_at is None


class Lines(logging.Handler):
    """The event names one logger logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.names.append(record.getMessage())


async def test_a_deposed_leaders_barkd_follower_records_nothing(
    deposed: tuple[Daemon, Daemon], boards: list[ForgedVtxo], barkd: BarkdStandIn
) -> None:
    """barkd's churn seen by a deposed leader's follower: neither what barkd says of a VTXO exitd holds
    nor a new VTXO is stored; the new leader's follower records both."""
    old, new = deposed
    held, _, fresh = boards
    (imported,) = await new.vtxos.import_vtxos([held.hex])
    barkd.add(held.vtxo, "spent")
    with pytest.raises(NotLeader) as answer:
        await old.sync(barkd)  # barkd's word alone: spent
    assert str(answer.value) == DEPOSED
    barkd.add(fresh.vtxo, "spendable")
    with pytest.raises(NotLeader, match="deposed"):
        await old.sync(barkd)  # a new VTXO to import first

    # Its loop meets the refusal as a daemon stepping down does: one line, no traceback.
    lines = Lines()
    logger = logging.getLogger("exitd.source.barkd")
    logger.addHandler(lines)
    stopping = asyncio.Event()
    try:
        running = asyncio.create_task(old.follower(barkd).run(stopping))
        async with asyncio.timeout(10):
            while "barkd_sync_stopped" not in lines.names:
                assert not running.done() and "barkd_sync_crashed" not in lines.names, lines.names
                await asyncio.sleep(0.05)
    finally:
        stopping.set()
        logger.removeHandler(lines)
    await asyncio.wait_for(running, 10)

    row = (await new.rows())[imported.vtxo_id]
    assert list(await new.rows()) == [imported.vtxo_id]
    assert (row.state, row.source, row.seen_state, row.seen_at) == (VtxoState.SPENDABLE, "import", None, None)

    assert (await new.sync(barkd)) is not None
    rows = await new.rows()
    assert rows[imported.vtxo_id].state is VtxoState.SPENT
    assert (rows[imported.vtxo_id].source, rows[imported.vtxo_id].seen_state) == ("barkd", "spent")
    fresh_id = str(fresh.vtxo.id)
    assert (rows[fresh_id].state, rows[fresh_id].seen_state) == (VtxoState.SPENDABLE, "spendable")


async def test_one_leader_imports_follows_barkd_and_marks_gone(
    database_url: str,
    bitcoind: RegtestNode,
    seed: WalletSeed,
    boards: list[ForgedVtxo],
    barkd: BarkdStandIn,
    tmp_path: Path,
) -> None:
    """The single leader's path, on PostgreSQL (holding the current term) and on SQLite (always leading)."""
    upgrade(database_url)
    imported, gone, followed = boards
    async with daemon_on(database_url, bitcoind, seed) as daemon:
        if daemon.store.shared:
            daemon.store.term = await take_term(daemon.store, "one:1", "http://127.0.0.1:1")
        async with serving(daemon, tmp_path / "datadir") as port:
            status, body = await post(port, "/api/v1/wallet/import-vtxo", {"vtxos": [imported.hex]})
            assert status == 200 and [v["id"] for v in body] == [str(imported.vtxo.id)], body
            code, stderr = await exitd_cli(tmp_path / "datadir", port, "import", gone.hex, "--protect")
            assert code == 0, stderr
            status, body = await post(port, f"/api/v1/wallet/vtxos/{gone.vtxo.id}/gone")
            assert status == 200, body
        barkd.add(followed.vtxo, "locked")
        assert (await daemon.sync(barkd)) is not None

        rows = await daemon.rows()
        assert set(rows) == {str(v.vtxo.id) for v in boards}
        first, second, third = (rows[str(v.vtxo.id)] for v in boards)
        assert (first.state, first.source, first.protect) == (VtxoState.SPENDABLE, "import", False)
        assert (second.state, second.protect) == (VtxoState.SPENT, True) and second.gone_at is not None
        assert (third.state, third.source, third.seen_state) == (VtxoState.SPENDABLE, "barkd", "locked")
