"""`exitd demo`: exitd's whole job on a private regtest chain, from VTXOs in to coins out, in under a minute.

REGTEST ONLY. It starts its own bitcoind and runs the real daemon in this process (in a thread with its own
event loop), then drives it over REST exactly as a barkd client would: fund the wallet, import forged VTXOs
of three shapes, start every exit, and mine one block at a time until each is claimed. Everything lives in
one temporary directory that is removed at the end, also when interrupted (SIGINT, SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from exitd.cli import console
from exitd.cli.client import ExitdClient
from exitd.config import Config, load_config
from exitd.daemon.datadir import init_datadir, read_token
from exitd.daemon.lifecycle import Daemon
from exitd.log import event, get_logger, setup_logging
from exitd.regtest.forge import Forge, ForgedVtxo, LeafSpec, UserKey
from exitd.regtest.node import MINER_WALLET, RPC_PASSWORD, RPC_USER, NodeFlavor, RegtestNode, free_port
from exitd.regtest.obtain import find_bitcoind
from exitd.wallet.keys import VtxoKeychain
from exitd.wallet.seed import WalletSeed

log = get_logger("demo")

# Wallet coins that pay the CPFP children; the funding planner splits them further as exits need.
FUNDING_COINS = 6
FUNDING_COIN_BTC = Decimal("0.01")
# Blocks after which a demo that has not claimed everything gives up (depth 5 + exit delta 6 + claim).
MAX_BLOCKS = 40
SATS_PER_BTC = 100_000_000


class DemoFailed(Exception):
    """The demo could not run to its end; the message says where it stopped."""


class Terminated(Exception):
    """SIGTERM arrived: stop and clean up as for Ctrl-C."""


@dataclass(frozen=True)
class DemoVtxo:
    """A forged VTXO and the shape it shows off."""

    shape: str
    forged: ForgedVtxo


@dataclass(frozen=True)
class ExitOutcome:
    """One exit's summary line: what went in, what the exit cost, what came out, and how many blocks."""

    vtxo: str
    shape: str
    depth: int
    amount_in_sat: int
    cpfp_fees_sat: int
    claim_fee_sat: int
    amount_out_sat: int
    blocks: int
    state: str


def demo_config(home: Path, node: RegtestNode) -> Config:
    """A config of the demo's own: nothing from the caller's environment or ~/.exitd leaks in."""
    overrides = {
        "datadir": str(home / "exitd"),
        "network": "regtest",
        "bitcoind.rpc_url": node.rpc_url,
        "bitcoind.rpc_user": RPC_USER,
        "bitcoind.rpc_password": RPC_PASSWORD,
        "rest.host": "127.0.0.1",
        "rest.port": free_port(),
        "log.file": str(home / "exitd.log"),
    }
    return load_config(None, overrides, environ={})


class DaemonThread:
    """The real daemon serving on loopback, run by an event loop of its own so the demo can drive it with
    the CLI's synchronous REST client. Signals stay with the main thread: the demo owns the clean-up."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="exitd-daemon", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise DemoFailed("the daemon did not start serving in time")
        if self._failure is not None:
            raise DemoFailed(f"the daemon failed to start: {self._failure}")

    def stop(self) -> None:
        """Ask the daemon to stop and wait until it has; a daemon still starting is let finish first."""
        if self._thread.ident is None:  # never started
            return
        self._ready.wait()
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported to the main thread, which decides
            self._failure = e
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        daemon = Daemon(self.config)
        self._loop, self._stopping = asyncio.get_running_loop(), daemon.stopping
        try:
            await daemon.start()
            self._ready.set()
            if await daemon.connect_node() is not None:
                await daemon.setup_wallet()
                await daemon.lead()
        finally:
            daemon.stopping.set()
            await daemon.stop()


def owned_key(keychain: VtxoKeychain, index: int) -> UserKey:
    """bark's VTXO key `index` of the daemon's mnemonic: the daemon finds and signs for it on import."""
    return UserKey.from_secret(keychain.seckey(index))


def forge_vtxos(node: RegtestNode, keychain: VtxoKeychain) -> list[DemoVtxo]:
    """One VTXO of each shape an exit meets: a board (one tx), four leaves of one round tree (they share
    their ancestors, each broadcast once) and an arkoor payment two hops after a board (depth 5)."""
    forge = Forge(node)
    vtxos = [DemoVtxo("board", forge.board(50_000, owned_key(keychain, 0)))]
    leaves = forge.tree([LeafSpec(20_000 + 1_000 * i, owned_key(keychain, 1 + i)) for i in range(4)])
    vtxos += [DemoVtxo(f"tree leaf {i + 1}/4", leaf) for i, leaf in enumerate(leaves)]
    vtxos.append(DemoVtxo("arkoor, 2 hops", forge.arkoor_chain(30_000, owned_key(keychain, 5), hops=2)))
    return vtxos


def fund_wallet(client: ExitdClient, node: RegtestNode) -> None:
    """Confirmed coins at the daemon's own addresses, in one sendmany (the miner's wallet refuses long
    chains of unconfirmed sends)."""
    node.fund_miner()
    addresses = [client.next_address()["address"] for _ in range(FUNDING_COINS)]
    node.rpc("sendmany", "", dict.fromkeys(addresses, str(FUNDING_COIN_BTC)), wallet=MINER_WALLET)
    node.mine(1)
    client.request("POST", "/api/v1/onchain/sync")


def claimed_sat(node: RegtestNode, txid: str, destination: str) -> int:
    """What a claim tx paid to `destination`."""
    tx = node.find_tx(txid)
    btc = sum(
        (Decimal(out["value"]) for out in tx["vout"] if out["scriptPubKey"].get("address") == destination),
        Decimal(0),
    )
    return int(btc * SATS_PER_BTC)


def run_exits(
    client: ExitdClient, node: RegtestNode, vtxos: Sequence[DemoVtxo], display: console.ExitsView
) -> list[ExitOutcome]:
    """Import, start every exit, then progress and mine one block at a time, claiming each exit to the
    wallet as soon as it is claimable, until all are claimed."""
    imported = client.import_vtxos([v.forged.hex for v in vtxos])
    if not all(v["key_held"] for v in imported):
        raise DemoFailed("the daemon does not hold the key of a forged VTXO")
    client.start_exits(None)
    start_height = node.height()
    destination = client.next_address()["address"]
    claimed_at: dict[str, int] = {}
    for _ in range(MAX_BLOCKS):
        client.progress(False, None)
        statuses = client.exit_statuses()
        height = node.height()
        display.show(height, statuses)
        for s in statuses:
            if s["state"]["type"] == "claimable":
                client.claim([s["vtxo_id"]], destination, None)
            elif s["state"]["type"] == "claimed":
                claimed_at.setdefault(s["vtxo_id"], height)
        if len(claimed_at) == len(vtxos):
            return outcomes(node, vtxos, statuses, destination, claimed_at, start_height)
        node.mine(1)
    raise DemoFailed(f"not every exit was claimed after {MAX_BLOCKS} blocks")


def outcomes(
    node: RegtestNode,
    vtxos: Sequence[DemoVtxo],
    statuses: Sequence[Mapping[str, Any]],
    destination: str,
    claimed_at: Mapping[str, int],
    start_height: int,
) -> list[ExitOutcome]:
    by_id = {s["vtxo_id"]: s for s in statuses}
    result = []
    for v in vtxos:
        vtxo_id = str(v.forged.id)
        status = by_id[vtxo_id]
        amount_in = v.forged.vtxo.amount
        amount_out = claimed_sat(node, status["state"]["txid"], destination)
        result.append(
            ExitOutcome(
                vtxo=vtxo_id,
                shape=v.shape,
                depth=v.forged.vtxo.exit_depth,
                amount_in_sat=amount_in,
                cpfp_fees_sat=int(status["fees_paid_sat"]),
                claim_fee_sat=amount_in - amount_out,
                amount_out_sat=amount_out,
                blocks=claimed_at[vtxo_id] - start_height,
                state=status["state"]["type"],
            )
        )
    return result


def summary_table(results: Sequence[ExitOutcome]) -> str:
    rows = [
        (
            r.vtxo,
            r.shape,
            str(r.depth),
            console.sat(r.amount_in_sat),
            console.sat(r.cpfp_fees_sat),
            console.sat(r.claim_fee_sat),
            console.sat(r.amount_out_sat),
            str(r.blocks),
            r.state,
        )
        for r in results
    ]
    headers = ("VTXO", "SHAPE", "DEPTH", "IN", "CPFP FEES", "CLAIM FEE", "OUT", "BLOCKS", "STATE")
    return console.table(headers, rows)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread, so it unwinds through the same clean-up as Ctrl-C."""

    def terminate(_signum: int, _frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(keep: bool, as_json: bool, out: TextIO = sys.stdout) -> list[ExitOutcome]:
    """The whole demo; the temporary directory and both processes are gone when it returns or raises,
    unless `keep` (then only the directory stays)."""
    find_bitcoind()  # before anything is made: it may build one first (and say so), or refuse in one line
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="exitd-demo-"))
    notes = sys.stderr if as_json else out
    print(f"exitd demo: working in {home} (regtest only; removed at the end)", file=notes, flush=True)
    node = RegtestNode(home / "bitcoind", flavor=NodeFlavor.PLAIN)  # Bitcoin Core's defaults: no tx index
    daemon: DaemonThread | None = None
    try:
        with sigterm_interrupts():
            node.start()
            config = demo_config(home, node)
            setup_logging(config.log.level, config.log.format, config.log.file)
            init_datadir(config)
            daemon = DaemonThread(config)
            daemon.start()
            client = ExitdClient("127.0.0.1", config.rest.port, read_token(config))
            fund_wallet(client, node)
            keychain = VtxoKeychain.from_mnemonic(WalletSeed(config.mnemonic_path).mnemonic)
            vtxos = forge_vtxos(node, keychain)
            display = console.ExitsView(notes, ("SHAPE", {str(v.forged.id): v.shape for v in vtxos}))
            results = run_exits(client, node, vtxos, display)
            event(
                log,
                logging.INFO,
                "demo_done",
                exits=len(results),
                seconds=round(time.monotonic() - started, 1),
            )
    finally:
        if daemon is not None:
            daemon.stop()
        node.stop()
        if keep:
            print(f"exitd demo: kept {home} (exitd's datadir: {home / 'exitd'})", file=notes, flush=True)
        else:
            shutil.rmtree(home, ignore_errors=True)
    if as_json:
        seconds = round(time.monotonic() - started, 1)
        print(json.dumps({"exits": [asdict(r) for r in results], "seconds": seconds}, indent=2), file=out)
    else:
        print(
            f"\nevery exit claimed in {time.monotonic() - started:.1f} s\n{summary_table(results)}", file=out
        )
    return results
