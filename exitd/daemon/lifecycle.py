"""Wiring and lifecycle of `exitd run`: store, node connection, REST server, background tasks, signals.

The REST server comes up first and stays up whatever bitcoind does: an operator asking "why is nothing
happening" gets an answer (a 500 naming the unreachable node) instead of a refused connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from exitd import __version__
from exitd.api.app import create_app
from exitd.api.context import Services
from exitd.api.prometheus import exits_by_state
from exitd.chain.fees import FeeEstimator
from exitd.chain.node import NodeInfo, NodeMismatch, check_node
from exitd.chain.rpc import (
    BitcoinRpc,
    NodeUnreachable,
    RetryPolicy,
    RpcAuthFailed,
    RpcCredentials,
    RpcError,
    RpcInWarmup,
)
from exitd.config import Config
from exitd.daemon.datadir import (
    DatadirError,
    read_auth_secret,
)
from exitd.daemon.notify import SystemdNotifier, status_line
from exitd.engine.alerts import Alerts, WebhookSettings
from exitd.engine.engine import ExitEngine
from exitd.engine.fee_policy import FeePolicy
from exitd.engine.guard import Guard, GuardSettings
from exitd.engine.model import ExitBook
from exitd.engine.replacement import ClaimPolicy
from exitd.log import event, get_logger
from exitd.source.barkd import BarkdClient, BarkdFollower, read_token
from exitd.store.db import Store, upgrade
from exitd.store.leader import Leadership
from exitd.wallet.errors import WalletDisabled, WalletMismatch
from exitd.wallet.onchain import OnchainWallet
from exitd.wallet.seed import WalletSeed
from exitd.wallet.vtxos import VtxoBook

log = get_logger("daemon")

# bitcoind's default cookie locations, used when the config names no RPC credentials.
NETWORK_SUBDIRS = {"mainnet": "", "testnet": "testnet3", "signet": "signet", "regtest": "regtest"}


def fee_policy(config: Config) -> FeePolicy:
    fees = config.fees
    return FeePolicy(fees.max_rate, fees.expiry_margin, fees.budget_ratio, fees.min_net_recovered)


def claim_policy(config: Config) -> ClaimPolicy:
    return ClaimPolicy(config.claims.replace_after_blocks, config.guard.claim_max_rate)


def guard_settings(config: Config) -> GuardSettings:
    guard = config.guard
    return GuardSettings(
        guard.enabled,
        guard.slack_blocks,
        guard.min_amount,
        guard.claim_address,
        guard.claim_max_rate,
        guard.protect_imports,
    )


def webhook_settings(config: Config) -> WebhookSettings:
    alerts = config.alerts
    return WebhookSettings(alerts.webhook_url, alerts.timeout, alerts.max_attempts, alerts.queue_size)


CRASH_EXIT_CODE = 137  # what a shell reports for a SIGKILLed process


def crash_at(point: str) -> Callable[[str], Awaitable[None]]:
    """TEST ONLY (config `testing.crash_point`): die without any cleanup when the engine reaches `point`."""

    async def hook(name: str) -> None:
        if name == point:
            event(log, logging.WARNING, "crash_point", point=name)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)

    return hook


class FatalStartupError(Exception):
    """exitd cannot run with this node or datadir; the message says what to change."""


def rpc_credentials(config: Config) -> RpcCredentials:
    auth = config.bitcoind
    if auth.rpc_user:
        return RpcCredentials(user=auth.rpc_user, password=auth.rpc_password)
    if auth.rpc_cookie:
        return RpcCredentials(cookie_file=Path(auth.rpc_cookie).expanduser())
    return RpcCredentials(
        cookie_file=Path("~/.bitcoin").expanduser() / NETWORK_SUBDIRS[config.network] / ".cookie"
    )


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        self.node: NodeInfo | None = None
        self.rpc = BitcoinRpc(
            config.rpc_url,
            rpc_credentials(config),
            timeout=config.bitcoind.timeout,
            retry=RetryPolicy(attempts=2, first_delay=0.2),
        )
        # A cut-off leader's statements fail by twice the failover bound (it stepped down by half of it),
        # so its engine stops and it stands by; a slow statement of a healthy leader keeps some room.
        self.store = Store(config.database_url, call_timeout=2 * config.database.failover_timeout)
        self.fees = FeeEstimator(self.rpc, config.fees.fallback_rate)
        seed = WalletSeed(config.mnemonic_path)
        self.wallet = OnchainWallet(
            self.rpc,
            self.store,
            self.fees,
            seed,
            config.network,
            config.bitcoind.wallet_name,
            config.wallet.birthday_height,
        )
        self.vtxos = VtxoBook(self.store, self.rpc, seed, config.wallet.vtxo_key_search_limit)
        self.alerts = Alerts(webhook_settings(config))
        self.guard, self.engine = self._guard_and_engine()
        self.follower: BarkdFollower | None = None
        self.services = Services(
            config=config,
            rpc=self.rpc,
            fees=self.fees,
            store=self.store,
            vtxos=self.vtxos,
            engine=self.engine,
            wallet=self.wallet,
            alerts=self.alerts,
        )
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None
        # Several exitd on one PostgreSQL database elect a leader; on SQLite this one always leads.
        self.leadership: Leadership | None = None
        self._next_reload = 0.0  # monotonic time of a standby's next reload (_stand_by)

    def _guard_and_engine(self) -> tuple[Guard, ExitEngine]:
        """The guard reads the engine's book and looks at every cycle, so the book is made first, then the
        guard, then the engine given both (and the wallet's funding plan, and the test-only crash hook)."""
        config = self.config
        policy = fee_policy(config)
        book = ExitBook()
        guard = Guard(
            book,
            self.vtxos,
            self.wallet,
            self.alerts,
            guard_settings(config),
            config.network,
            self.fees,
            policy,
        )
        engine = ExitEngine(
            self.store,
            self.rpc,
            self.fees,
            self.vtxos,
            self.wallet,
            policy,
            config.network,
            book=book,
            guard=guard,
            funding=self.wallet,
            claims=claim_policy(config),
            crash_hook=crash_at(config.testing.crash_point) if config.testing.crash_point else None,
        )
        return guard, engine

    def _follow_barkd(self) -> None:
        """The barkd follower, when [barkd] names one; its token file must be readable."""
        barkd = self.config.barkd
        if not barkd.url:
            return
        try:
            token = read_token(barkd.token_file)
        except OSError as e:
            raise FatalStartupError(f"barkd.token_file {barkd.token_file}: {e.strerror or e}") from None
        self.follower = BarkdFollower(
            BarkdClient(barkd.url, token), self.vtxos, self.alerts, barkd.sync_interval
        )
        self.services.source = self.follower

    async def start(self) -> None:
        self._follow_barkd()
        await asyncio.to_thread(upgrade, self.config.database_url)
        await self.engine.load()
        self.guard.prime()
        app = create_app(self.services, read_auth_secret(self.config))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.rest.host, self.config.rest.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.config.rest.port
        event(
            log,
            logging.INFO,
            "rest_listening",
            host=self.config.rest.host,
            port=self.bound_port,
            version=__version__,
            network=self.config.network,
        )

    async def sleep_unless_stopped(self, seconds: float) -> bool:
        """Sleep; True when the daemon was asked to stop meanwhile."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def connect_node(self) -> NodeInfo | None:
        """Wait for bitcoind, logging each failed attempt. A node that lacks what exitd needs
        (exitd.chain.node) is fatal, and so is a pruned node without the blocks exitd has yet to read."""
        delay = 1.0
        for attempt in itertools.count(1):
            try:
                info = await check_node(self.rpc, self.config.network)
            except NodeMismatch as e:
                raise FatalStartupError(str(e)) from None
            except (NodeUnreachable, RpcInWarmup, RpcAuthFailed) as e:
                event(log, logging.WARNING, "node_unavailable", attempt=attempt, retry_in=delay, error=str(e))
                if await self.sleep_unless_stopped(delay):
                    return None
                delay = min(delay * 2, 30.0)
                continue
            # One line naming what exitd needs of the node and what it found (no tx index needed).
            event(log, logging.INFO, "node_connected", **info.summary())
            gap = await self.engine.view.locator.pruned_gap(info.prune_height)
            if gap is not None:
                raise FatalStartupError(str(gap))
            self.node = info
            return info
        raise AssertionError("unreachable")

    async def setup_wallet(self) -> None:
        """The watch-only wallet in bitcoind, right after the node answered: a node without wallet support
        or a wallet of another mnemonic is fatal; anything else is retried when the wallet is next used."""
        try:
            await self.wallet.setup()
        except (WalletDisabled, WalletMismatch) as e:
            raise FatalStartupError(str(e)) from None
        except RpcError as e:
            event(log, logging.WARNING, "wallet_setup_failed", error=str(e))

    async def lead(self) -> None:
        """Run the engine while this daemon leads. On a shared database: stand by (serving reads from a
        fresh load of the stored exits) until elected, then load what the last leader stored and run; a
        leader whose lock session fails steps down (its term given up first), stops its engine, and stands
        by again once the database answers."""
        if not self.store.shared:
            await self.run_engine(self.stopping)
            return
        rest_url = f"http://{self.config.rest.host}:{self.bound_port}"
        self.leadership = Leadership(self.store, rest_url, self.config.database.failover_timeout)
        while await self.leadership.acquire(self.stopping, self._stand_by, self._take_over):
            term_over = asyncio.Event()
            holding = asyncio.create_task(self.leadership.hold(term_over))
            running = asyncio.create_task(self.run_engine(term_over))
            stopping = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({holding, running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            term_over.set()
            lost = await holding
            # A cut-off leader's engine waits for its database calls in flight: they fail within
            # 2 * failover_timeout (the store's call_timeout).
            await running
            if not lost:
                return
            self._next_reload = 0.0

    async def _stand_by(self) -> None:
        """A standby's view of the exits, refreshed from the shared database for its reads (the exits' rows
        and the children's status: engine.refresh), at most a tenth of the time, at most every try."""
        if time.monotonic() < self._next_reload:
            return
        started = time.monotonic()
        await self.engine.refresh()
        self._next_reload = time.monotonic() + 9 * (time.monotonic() - started)

    async def _take_over(self) -> None:
        """What the new leader reads before it may write: the exits as the last leader left them, as a
        refresh of the standby's view (what changed since its last reload), not a whole load."""
        await self.engine.refresh()
        self.guard.prime()

    async def run_engine(self, stopping: asyncio.Event) -> None:
        """The background cycle, with guard mode acting after each cycle and the alerts worker sending,
        until `stopping` (the daemon's, or the end of this daemon's term as the leader)."""
        guard = asyncio.create_task(self.guard.run(stopping, self.engine))
        alerts = asyncio.create_task(self.alerts.run())
        follower = asyncio.create_task(self.follower.run(stopping)) if self.follower else None
        try:
            await self.engine.run(stopping)
        finally:
            stopping.set()
            await guard
            if follower is not None:
                await follower
            alerts.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await alerts

    async def stop(self) -> None:
        if self.leadership is not None:
            await self.leadership.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.rpc.close()
        await self.store.close()
        event(log, logging.INFO, "stopped")

    def status(self) -> str:
        """One line for systemd's STATUS=: the exits by state, and the tip the last cycle saw."""
        if self.node is None:
            return f"waiting for bitcoind at {self.config.rpc_url}"
        engine = self.services.engine
        tip = engine.last_tip.height if engine.last_tip is not None else None
        return status_line(exits_by_state(engine.exits.values()), tip)

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM (the caller holds the datadir: held_datadir). Whatever stops the
        daemon early is logged as `fatal` through the configured log before `stopped`, so a log file tells
        why, not only stderr."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        notifier = SystemdNotifier.from_environ()
        supervisor: asyncio.Task[None] | None = None
        try:
            await self.start()
            notifier.ready(self.status())
            supervisor = asyncio.create_task(notifier.supervise(self.stopping, self.status))
            if await self.connect_node() is not None:
                await self.setup_wallet()
                await self.lead()
            event(log, logging.INFO, "stopping")
        except (FatalStartupError, DatadirError) as e:
            event(log, logging.CRITICAL, "fatal", error=str(e))
            raise
        except Exception as e:
            # Nobody foresaw this one: the traceback goes with it.
            log.critical("fatal", exc_info=True, extra={"fields": {"error": str(e) or type(e).__name__}})
            raise
        finally:
            notifier.stopping()
            self.stopping.set()
            if supervisor is not None:
                await supervisor
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()
