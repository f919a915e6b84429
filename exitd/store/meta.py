"""Key-value facts about the datadir."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.store.models import Meta


async def get_meta(session: AsyncSession, key: str) -> str | None:
    return (await session.execute(select(Meta.value).where(Meta.key == key))).scalar_one_or_none()


async def set_meta(session: AsyncSession, key: str, value: str) -> None:
    await session.merge(Meta(key=key, value=value))
