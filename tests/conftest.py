"""Shared fixtures: a real regtest bitcoind (one per session, or a private one), the real daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="session")
def bitcoind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestNode]:
    """One regtest node for the whole session; tests must not assume an empty chain."""
    node = RegtestNode(tmp_path_factory.mktemp("bitcoind"))
    node.start()
    try:
        node.fund_miner()
        yield node
    finally:
        node.stop()


@pytest.fixture
def private_bitcoind(tmp_path: Path) -> Iterator[RegtestNode]:
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
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init()
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


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
