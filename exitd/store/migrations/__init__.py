"""Alembic revisions of exitd's SQLite schema (applied by `exitd.store.db.upgrade` at start)."""
