import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from exitd.store.db import (
    Store,
    StoreError,
    alembic_config,
    current_revision,
    head_revision,
    is_postgres,
    run_sync,
    upgrade,
)
from exitd.store.exits import (
    ExitUpdate,
    StoredExitTx,
    insert_exit_txs,
    load_exit_txs,
    load_histories,
    update_exits,
)
from exitd.store.leader import take_term
from exitd.store.locations import StoredLocations
from exitd.store.meta import get_meta, set_meta, write_meta
from exitd.store.models import Base, ExitRow, VtxoRow
from tests.support.postgres import PostgresServer


def bare_vtxo_row(vtxo_id: str, **columns: Any) -> VtxoRow:
    """A row that only the store reads (no VTXO behind it)."""
    return VtxoRow(
        vtxo_id=vtxo_id,
        encoded=b"",
        amount_sat=1,
        expiry_height=1,
        exit_delta=1,
        exit_depth=1,
        policy_type="pubkey",
        user_pubkey="",
        server_pubkey="",
        chain_anchor="",
        imported_at=0,
        **columns,
    )


def table_names(url: str) -> set[str]:
    return set(run_sync(url, lambda conn: sa.inspect(conn).get_table_names()))


def test_upgrade_from_empty_database_and_idempotent_rerun(database_url: str) -> None:
    assert current_revision(database_url) is None
    upgrade(database_url)
    head = head_revision()
    assert head is not None and current_revision(database_url) == head
    assert {"meta", "exits", "coin_reservations", "alembic_version"} <= table_names(database_url)
    upgrade(database_url)
    assert current_revision(database_url) == head
    if not is_postgres(database_url):
        mode = run_sync(database_url, lambda conn: conn.exec_driver_sql("pragma journal_mode").scalar())
        assert mode == "wal"


def test_newer_schema_is_refused(database_url: str) -> None:
    upgrade(database_url)
    run_sync(
        database_url, lambda conn: conn.execute(sa.text("update alembic_version set version_num = 'ffff'"))
    )
    with pytest.raises(StoreError, match="newer version"):
        upgrade(database_url)


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    from exitd.regtest.node import free_port

    url = f"postgresql+asyncpg://exitd:hunter2@127.0.0.1:{free_port()}/exitd"
    with pytest.raises(StoreError, match="cannot open or migrate") as raised:
        upgrade(url)
    assert "hunter2" not in str(raised.value)


async def test_store_session_commits_and_rolls_back(database_url: str) -> None:
    upgrade(database_url)
    store = Store(database_url)
    try:
        async with store.session() as s:
            await set_meta(s, "network", "regtest")
        with pytest.raises(RuntimeError):
            async with store.session() as s:
                await set_meta(s, "network", "mainnet")
                raise RuntimeError("abort")
        async with store.session() as s:
            assert await get_meta(s, "network") == "regtest"
    finally:
        await store.close()
    write_meta(database_url, "network", "signet")  # the CLI's way, without an event loop of its own
    store = Store(database_url)
    try:
        async with store.session() as s:
            assert await get_meta(s, "network") == "signet"
    finally:
        await store.close()


def test_models_match_migrations(database_url: str) -> None:
    """The ORM models and the alembic revisions describe the same schema (no drift either way)."""
    upgrade(database_url)
    diff = run_sync(
        database_url, lambda conn: compare_metadata(MigrationContext.configure(conn), Base.metadata)
    )
    assert diff == []


def test_killed_mid_migration_upgrades_cleanly_later(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Each revision runs in one transaction with its version stamp (SQLite's and PostgreSQL's DDL are
    transactional): a migration killed at any instant leaves the database at a whole revision, and the
    next start finishes."""
    script = "import sys; from exitd.store.db import upgrade; upgrade(sys.argv[1])"
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config("")).walk_revisions()}
    postgres: PostgresServer = request.getfixturevalue("postgres")
    for i, delay in enumerate(d / 10 for d in range(3, 16)):
        for url in (f"sqlite+aiosqlite:///{tmp_path / f'exitd-{i}.sqlite3'}", postgres.new_database()):
            proc = subprocess.Popen([sys.executable, "-c", script, url])
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert current_revision(url) in {None} | known
            upgrade(url)
            assert current_revision(url) == head_revision()
            assert {"meta", "exits", "funding_splits"} <= table_names(url)
            if not is_postgres(url):
                check = run_sync(url, lambda conn: conn.exec_driver_sql("pragma integrity_check").scalar())
                assert check == "ok"


async def test_stored_exit_txs_are_not_stored_twice(database_url: str) -> None:
    """insert_exit_txs skips the txs stored already (a tree's shared ancestors), on either backend."""
    upgrade(database_url)
    store = Store(database_url)
    row = StoredExitTx("aa" * 32, b"first", 100, "bb" * 32, 1)
    try:
        async with store.session() as session:
            await insert_exit_txs(session, [row])
        async with store.session() as session:
            await insert_exit_txs(session, [replace(row, raw=b"second"), replace(row, txid="cc" * 32)])
        async with store.session() as session:
            stored = {tx.txid: tx.raw for tx in await load_exit_txs(session, ["aa" * 32, "cc" * 32])}
        assert stored == {"aa" * 32: b"first", "cc" * 32: b"first"}
    finally:
        await store.close()


async def test_a_state_change_appends_the_state_it_leaves_to_the_history(database_url: str) -> None:
    """update_exits has the database append to the stored history: the daemon keeps none of it in memory."""
    upgrade(database_url)
    store = Store(database_url)
    vtxo_id = "ab" * 32 + ":0"
    start, processing, done = (
        {"type": kind, "tip_height": h} for kind, h in (("start", 1), ("processing", 2), ("x", 3))
    )
    try:
        async with store.session() as session:
            session.add(bare_vtxo_row(vtxo_id))
            await session.flush()
            session.add(
                ExitRow(
                    vtxo_id=vtxo_id,
                    state=json.dumps(start),
                    state_kind="start",
                    history="[]",
                    started_by="user",
                    created_at=0,
                    updated_at=0,
                )
            )
        for new in (processing, done):
            async with store.session() as session:
                await update_exits(session, [ExitUpdate(vtxo_id, None, json.dumps(new), new["type"])])
        async with store.session() as session:
            await update_exits(session, [ExitUpdate(vtxo_id, '{"type":"e"}')])  # an error alone
            assert await load_histories(session, [vtxo_id]) == {vtxo_id: [start, processing]}
            row = await session.get(ExitRow, vtxo_id)
            assert row is not None and json.loads(row.state) == done and row.error == '{"type":"e"}'
    finally:
        await store.close()


async def test_the_guard_is_given_only_vtxos_a_source_vouches_for_or_the_user_protects(
    database_url: str,
) -> None:
    """Which VTXOs the guard may exit, asked of the database: barkd's spendable and locked ones, protected
    imports, never a stale import unasked, nor one spent, exiting or marked gone; on either backend."""
    from exitd.store.vtxos import guarded_vtxo_ids, record_seen

    upgrade(database_url)
    store = Store(database_url)
    kinds = {
        # name: (state, source, protect, gone_at)
        "barkd-spendable": ("spendable", "barkd", False, None),
        "barkd-locked": ("spendable", "barkd", False, None),
        "barkd-spent": ("spent", "barkd", False, None),
        "barkd-missing": ("spendable", "barkd", False, None),
        "stale-import": ("spendable", "import", False, None),
        "protected-import": ("spendable", "import", True, None),
        "protected-gone": ("spent", "import", True, 5),
        "protected-exiting": ("locked", "import", True, None),
    }
    ids = {name: f"{i:064x}:0" for i, name in enumerate(kinds)}
    try:
        if store.shared:  # barkd's word is recorded by the leader alone
            store.term = await take_term(store, "one:1", "")
        async with store.session() as session:
            for name, (state, source, protect, gone_at) in kinds.items():
                session.add(
                    bare_vtxo_row(ids[name], state=state, source=source, protect=protect, gone_at=gone_at)
                )
        async with store.session(fenced=True) as session:
            seen = {"barkd-spendable": "spendable", "barkd-locked": "locked", "barkd-spent": "spent"}
            await record_seen(session, {ids[n]: s for n, s in seen.items()}, 7, "barkd")
            await record_seen(session, {ids["barkd-missing"]: "missing"}, 7, "barkd")
        async with store.session() as session:
            guarded = set(await guarded_vtxo_ids(session, protect_imports=False))
            everything = set(await guarded_vtxo_ids(session, protect_imports=True))
            row = await session.get(VtxoRow, ids["barkd-locked"])
            assert row is not None and (row.seen_state, row.seen_at) == ("locked", 7)
    finally:
        await store.close()
    names = {v: k for k, v in ids.items()}
    assert {names[i] for i in guarded} == {"barkd-spendable", "barkd-locked", "protected-import"}
    assert {names[i] for i in everything} == {
        "barkd-spendable",
        "barkd-locked",
        "protected-import",
        "stale-import",
    }


async def test_the_chain_locators_state_survives_a_restart(database_url: str) -> None:
    """What exitd.chain.locator needs after a restart: the block read up to, the watched txids and where
    the found ones are; changed rows replace the stored ones, forgotten ones go."""
    upgrade(database_url)
    store = Store(database_url)
    try:
        locations = StoredLocations(store)
        assert await locations.load() == (None, {})
        await locations.save((10, "aa" * 32), {"01" * 32: None, "02" * 32: (9, "bb" * 32)}, [])
        await locations.save((12, "cc" * 32), {"01" * 32: (12, "cc" * 32), "03" * 32: None}, ["02" * 32])
    finally:
        await store.close()
    store = Store(database_url)
    try:
        assert await StoredLocations(store).load() == (
            (12, "cc" * 32),
            {"01" * 32: (12, "cc" * 32), "03" * 32: None},
        )
    finally:
        await store.close()
