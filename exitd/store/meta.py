"""Key-value facts about the datadir."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from exitd.store.db import run_sync
from exitd.store.models import Meta

# The BIP32 master fingerprint of the wallet this database belongs to (hex).
WALLET_FINGERPRINT = "wallet_fingerprint"
# Unix time at which exitd generated the mnemonic: no coin of it can be older.
WALLET_CREATED_AT = "wallet_created_at"
# The height from which a restored wallet's coins are searched, as given when it was created over REST.
WALLET_BIRTHDAY_HEIGHT = "wallet_birthday_height"


async def get_meta(session: AsyncSession, key: str) -> str | None:
    return (await session.execute(select(Meta.value).where(Meta.key == key))).scalar_one_or_none()


async def set_meta(session: AsyncSession, key: str, value: str) -> None:
    await session.merge(Meta(key=key, value=value))


def write_meta(url: str, key: str, value: str) -> None:
    """set_meta for the CLI, which runs before any daemon and without an event loop (exitd init)."""

    def write(conn: sa.Connection) -> None:
        with Session(conn) as session:
            session.merge(Meta(key=key, value=value))
            session.commit()

    run_sync(url, write)
