"""The chain locator's state (exitd.chain.locator): the block read up to, in meta, and the watched txids."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import delete, select

from exitd.store.db import Store, dialect_insert, in_chunks
from exitd.store.meta import get_meta, set_meta
from exitd.store.models import WatchedTxRow

PROCESSED_HEIGHT = "chain_processed_height"
PROCESSED_HASH = "chain_processed_hash"

# A block: (height, hash).
Position = tuple[int, str]


class StoredLocations:
    """The locator's store (exitd.chain.locator.LocatorStore) in exitd's database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def load(self) -> tuple[Position | None, dict[str, Position | None]]:
        async with self.store.session() as session:
            height = await get_meta(session, PROCESSED_HEIGHT)
            block_hash = await get_meta(session, PROCESSED_HASH)
            # Plain rows, not ORM objects: a hundred thousand exits watch over a hundred thousand txids.
            columns = (WatchedTxRow.txid, WatchedTxRow.block_height, WatchedTxRow.block_hash)
            txs = {
                txid: (height, block_hash) if height is not None and block_hash is not None else None
                for txid, height, block_hash in await session.execute(select(*columns))
            }
        processed = (int(height), block_hash) if height is not None and block_hash else None
        return processed, txs

    async def save(
        self, processed: Position, changed: Mapping[str, Position | None], forgotten: Collection[str]
    ) -> None:
        async with self.store.session() as session:
            await set_meta(session, PROCESSED_HEIGHT, str(processed[0]))
            await set_meta(session, PROCESSED_HASH, processed[1])
            if changed:
                rows = [
                    {
                        "txid": txid,
                        "block_height": block[0] if block else None,
                        "block_hash": block[1] if block else None,
                    }
                    for txid, block in changed.items()
                ]
                statement = dialect_insert(session, WatchedTxRow.__table__)  # type: ignore[arg-type]
                await session.execute(
                    statement.on_conflict_do_update(
                        index_elements=[WatchedTxRow.txid],
                        set_={
                            "block_height": statement.excluded.block_height,
                            "block_hash": statement.excluded.block_hash,
                        },
                    ),
                    rows,
                )
            for chunk in in_chunks(list(forgotten)):
                await session.execute(delete(WatchedTxRow).where(WatchedTxRow.txid.in_(chunk)))
