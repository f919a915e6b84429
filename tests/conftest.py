"""Shared fixtures: a real regtest bitcoind (one per session, or a private one), the real daemon."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exitd.regtest.node import NodeFlavor, RegtestNode
from exitd.regtest.obtain import find_bitcoind
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.postgres import PostgresServer
from tests.support.webhook import WebhookReceiver


@pytest.fixture(scope="session")
def bitcoind_binary(request: pytest.FixtureRequest) -> Path:
    """The bitcoind every node runs. On a machine without one, the first test that needs it builds it, and
    the build's announcement and progress line go to the terminal, past pytest's capture."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        return find_bitcoind()


# The nodes exitd must work on; `@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)` runs a
# test against each.
EVERY_NODE = [pytest.param(f, id=f.value) for f in NodeFlavor]


class NodePool:
    """One node per flavor for the whole session, started when a test first needs it."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.nodes: dict[NodeFlavor, RegtestNode] = {}

    def get(self, flavor: NodeFlavor) -> RegtestNode:
        if flavor not in self.nodes:
            node = RegtestNode(self.tmp_path_factory.mktemp(f"bitcoind-{flavor.value}"), flavor=flavor)
            node.start()
            self.nodes[flavor] = node
            node.fund_miner()
        return self.nodes[flavor]

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture(scope="session")
def node_pool(tmp_path_factory: pytest.TempPathFactory, bitcoind_binary: Path) -> Iterator[NodePool]:
    pool = NodePool(tmp_path_factory)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def bitcoind(request: pytest.FixtureRequest, node_pool: NodePool) -> RegtestNode:
    """The session's regtest node (with a tx index, unless parametrized with another flavor); tests must
    not assume an empty chain. Function-scoped over the session's pool on purpose: a parametrized
    session fixture would make pytest move every parametrized test ahead of the others."""
    return node_pool.get(getattr(request, "param", NodeFlavor.TXINDEX))


@pytest.fixture
def private_bitcoind(
    request: pytest.FixtureRequest, tmp_path: Path, bitcoind_binary: Path
) -> Iterator[RegtestNode]:
    """A node of this test's own, for tests that stop, restart or reorg it (with a tx index, unless
    parametrized with another flavor)."""
    node = RegtestNode(tmp_path / "bitcoind", flavor=getattr(request, "param", NodeFlavor.TXINDEX))
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def daemon(tmp_path: Path, bitcoind: RegtestNode) -> Iterator[DaemonProcess]:
    """The real exitd, initialised and running against the session node."""
    with running_daemon(tmp_path / "exitd", bitcoind) as proc:
        yield proc


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole session (tests/support/postgres.py); each test that asks
    gets a database of its own."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database on each backend: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'exitd.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's, in the abstract namespace as systemd's own is, and its
    $NOTIFY_SOCKET spelling ('@name')."""
    name = f"exitd-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield sock, "@" + name


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A PostgreSQL database of this test's own, migrated to the newest schema."""
    from exitd.store.db import upgrade

    url = postgres.new_database()
    upgrade(url)
    return url


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook endpoint on loopback keeping every alert it is sent."""
    hook = WebhookReceiver()
    hook.start()
    try:
        yield hook
    finally:
        hook.stop()
