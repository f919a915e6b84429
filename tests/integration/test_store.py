import json
import sqlite3
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from exitd.store.db import Store, StoreError, alembic_config, current_revision, head_revision, upgrade
from exitd.store.exits import ExitUpdate, load_histories, update_exits
from exitd.store.meta import get_meta, set_meta
from exitd.store.models import ExitRow, VtxoRow


def test_upgrade_from_empty_file_and_idempotent_rerun(tmp_path: Path) -> None:
    db = tmp_path / "exitd.sqlite3"
    db.touch()
    assert current_revision(db) is None
    upgrade(db)
    head = head_revision(db)
    assert head is not None and current_revision(db) == head
    tables = {r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
    assert {"meta", "alembic_version"} <= tables
    upgrade(db)
    assert current_revision(db) == head
    assert sqlite3.connect(db).execute("pragma journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "exitd.sqlite3"
    upgrade(db)
    with sqlite3.connect(db) as conn:
        conn.execute("update alembic_version set version_num = 'ffff'")
    with pytest.raises(StoreError, match="newer version"):
        upgrade(db)


async def test_store_session_commits_and_rolls_back(tmp_path: Path) -> None:
    db = tmp_path / "exitd.sqlite3"
    upgrade(db)
    store = Store(db)
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


def test_models_match_migrations(tmp_path: Path) -> None:
    """The ORM models and the alembic revisions describe the same schema (no drift either way)."""
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from exitd.store.models import Base

    db = tmp_path / "exitd.sqlite3"
    upgrade(db)
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_killed_mid_migration_upgrades_cleanly_later(tmp_path: Path) -> None:
    """Each revision runs in one transaction with its version stamp (SQLite's DDL is transactional): a
    migration killed at any instant leaves the file at a whole revision, and the next start finishes."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import sys; from pathlib import Path; from exitd.store.db import upgrade; upgrade(Path(sys.argv[1]))"
    )
    known = {
        rev.revision for rev in ScriptDirectory.from_config(alembic_config(tmp_path / "any")).walk_revisions()
    }
    for i, delay in enumerate(d / 10 for d in range(3, 16)):
        db = tmp_path / f"exitd-{i}.sqlite3"
        proc = subprocess.Popen([sys.executable, "-c", script, str(db)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if db.exists():
            assert current_revision(db) in {None} | known
        upgrade(db)
        assert current_revision(db) == head_revision(db)
        assert sqlite3.connect(db).execute("pragma integrity_check").fetchone()[0] == "ok"


async def test_a_state_change_appends_the_state_it_leaves_to_the_history(tmp_path: Path) -> None:
    """update_exits has SQLite append to the stored history: the daemon keeps none of it in memory."""
    upgrade(tmp_path / "exitd.sqlite3")
    store = Store(tmp_path / "exitd.sqlite3")
    vtxo_id = "ab" * 32 + ":0"
    start, processing, done = (
        {"type": kind, "tip_height": h} for kind, h in (("start", 1), ("processing", 2), ("x", 3))
    )
    try:
        async with store.session() as session:
            session.add(
                VtxoRow(
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
                )
            )
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
