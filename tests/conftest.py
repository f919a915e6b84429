"""Shared fixtures: a real regtest bitcoind (one per session, or a private one), the real daemon."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exitd.regtest.node import RegtestNode
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


@pytest.fixture(scope="session")
def bitcoind(tmp_path_factory: pytest.TempPathFactory, bitcoind_binary: Path) -> Iterator[RegtestNode]:
    """One regtest node for the whole session; tests must not assume an empty chain."""
    node = RegtestNode(tmp_path_factory.mktemp("bitcoind"))
    node.start()
    try:
        node.fund_miner()
        yield node
    finally:
        node.stop()


@pytest.fixture
def private_bitcoind(tmp_path: Path, bitcoind_binary: Path) -> Iterator[RegtestNode]:
    """A node of this test's own, for tests that stop, restart or reorg it."""
    node = RegtestNode(tmp_path / "bitcoind")
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
