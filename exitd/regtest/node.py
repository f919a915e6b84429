"""A private regtest bitcoind on free loopback ports in a temporary directory, always stopped.

Synchronous on purpose: tests and the demo drive it between their own async steps (mining, funding),
and a plain HTTP call per command keeps it independent of the code under test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from exitd.regtest.obtain import find_bitcoind

RPC_USER = "exitd-test"
RPC_PASSWORD = "exitd-test-password"
MINER_WALLET = "miner"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpcauth_line(user: str, password: str, salt: str = "00" * 16) -> str:
    """bitcoind's -rpcauth value: user:salt$HMAC-SHA256(key=salt, msg=password); keeps the cookie too."""
    digest = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
    return f"{user}:{salt}${digest}"


# bitcoind keeps at least this many blocks below the tip whatever -prune says (MIN_BLOCKS_TO_KEEP).
PRUNE_KEEPS = 288
# How far a pruned node's clock runs behind (seconds).
PRUNED_CLOCK_LAG = 2 * 86400


class RegtestError(Exception):
    pass


class NodeFlavor(Enum):
    """How a node keeps the chain: exitd must work on each."""

    TXINDEX = "txindex"  # a tx index (-txindex)
    PLAIN = "plain"  # Bitcoin Core's defaults: no tx index
    PRUNED = "pruned"  # -prune=1 (manual pruneblockchain) with small block files (-fastprune)

    def args(self) -> tuple[str, ...]:
        if self is NodeFlavor.TXINDEX:
            return ("-txindex=1",)
        if self is NodeFlavor.PRUNED:
            return ("-prune=1", "-fastprune=1")
        return ()


class RegtestNode:
    def __init__(
        self,
        datadir: Path | None = None,
        extra_args: tuple[str, ...] = (),
        flavor: NodeFlavor = NodeFlavor.TXINDEX,
    ) -> None:
        self.binary = find_bitcoind()
        self._own_dir = datadir is None
        self.datadir = datadir or Path(tempfile.mkdtemp(prefix="exitd-regtest-"))
        self.rpc_port = free_port()
        self.p2p_port = free_port()
        self.extra_args = extra_args
        self.flavor = flavor
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def cookie_file(self) -> Path:
        return self.datadir / "regtest" / ".cookie"

    def args(self) -> list[str]:
        return [
            str(self.binary),
            "-regtest",
            f"-datadir={self.datadir}",
            "-server",
            "-listen=0",
            "-rpcbind=127.0.0.1",
            "-rpcallowip=127.0.0.1",
            f"-rpcport={self.rpc_port}",
            f"-port={self.p2p_port}",
            f"-rpcauth={rpcauth_line(RPC_USER, RPC_PASSWORD)}",
            *self.flavor.args(),
            "-fallbackfee=0.0002",
            "-printtoconsole=0",
            "-dnsseed=0",
            "-fixedseeds=0",
            *self.extra_args,
        ]

    def start(self, timeout: float = 60.0) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RegtestError(f"bitcoind exited at start-up: {err.strip()}")
            try:
                self.rpc("getblockchaininfo")
                if self.flavor is NodeFlavor.PRUNED:
                    # Block times two days back, as the pruned blocks of a real node are: bitcoind
                    # rescans the last two hours of blocks for a new wallet, which must all be there.
                    self.rpc("setmocktime", int(time.time()) - PRUNED_CLOCK_LAG)
                return
            except (OSError, RegtestError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RegtestError("bitcoind did not answer RPC in time") from None
                time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.rpc("stop")
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def rpc(self, method: str, *params: Any, wallet: str | None = None) -> Any:
        url = self.rpc_url + (f"/wallet/{wallet}" if wallet else "")
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, default=str)
        token = base64.b64encode(f"{RPC_USER}:{RPC_PASSWORD}".encode()).decode()
        request = urllib.request.Request(
            url,
            data=body.encode(),
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                reply = json.loads(resp.read(), parse_float=Decimal)
        except urllib.error.HTTPError as e:
            try:
                reply = json.loads(e.read(), parse_float=Decimal)
            except ValueError:
                raise RegtestError(f"{method}: HTTP {e.code}") from None
        if reply.get("error"):
            raise RegtestError(
                f"{method}: {reply['error'].get('message')} (code {reply['error'].get('code')})"
            )
        return reply["result"]

    # Mining and funding helpers.

    def ensure_miner_wallet(self) -> None:
        if MINER_WALLET in self.rpc("listwallets"):
            return
        try:
            self.rpc("loadwallet", MINER_WALLET)
        except RegtestError:
            self.rpc("createwallet", MINER_WALLET)

    def miner_address(self) -> str:
        self.ensure_miner_wallet()
        return str(self.rpc("getnewaddress", "", "bech32m", wallet=MINER_WALLET))

    def mine(self, blocks: int = 1, address: str | None = None) -> list[str]:
        return list(self.rpc("generatetoaddress", blocks, address or self.miner_address()))

    def height(self) -> int:
        return int(self.rpc("getblockcount"))

    def fund_miner(self, min_btc: int = 50) -> None:
        """Make sure the miner wallet has at least `min_btc` of mature coins."""
        self.ensure_miner_wallet()
        while Decimal(self.rpc("getbalance", wallet=MINER_WALLET)) < min_btc:
            self.mine(101 if self.height() < 101 else 10)

    def find_tx(self, txid: str, depth: int = 50) -> dict[str, Any]:
        """A tx of the mempool or of the last `depth` blocks, verbose, on any flavor of node (without a tx
        index, getrawtransaction finds a mined tx only when told its block)."""
        try:
            return dict(self.rpc("getrawtransaction", txid, 1))
        except RegtestError:
            pass
        tip = self.height()
        for height in range(tip, max(tip - depth, 0), -1):
            block_hash = self.rpc("getblockhash", height)
            try:
                return dict(self.rpc("getrawtransaction", txid, 1, block_hash))
            except RegtestError:
                continue
        raise RegtestError(f"tx {txid} is neither in the mempool nor in the last {depth} blocks")

    def prune_history(self, max_blocks: int = 2000) -> int:
        """On a pruned node, mine until every block made so far can be pruned (bitcoind keeps the last
        PRUNE_KEEPS blocks and deletes only whole block files), and prune them. Returns the lowest height
        still stored (0 on other nodes)."""
        if self.flavor is not NodeFlavor.PRUNED:
            return 0
        below = self.height() + 1
        self.mine(PRUNE_KEEPS)
        for _ in range(0, max_blocks, 50):
            self.mine(50)
            self.rpc("pruneblockchain", self.height() - PRUNE_KEEPS)
            lowest = int(self.rpc("getblockchaininfo")["pruneheight"])
            if lowest >= below:
                return lowest
        raise RegtestError(f"blocks below {below} still stored after {max_blocks} more blocks")

    def send(self, address: str, btc: Decimal | str) -> str:
        self.fund_miner(int(Decimal(btc)) + 1)
        return str(self.rpc("sendtoaddress", address, str(btc), wallet=MINER_WALLET))

    def __enter__(self) -> RegtestNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
