"""The VTXO book: importing bark VTXOs (validated end to end before anything is stored) and reading them.

A VTXO is accepted only when its whole exit chain rebuilds onto its own id and every stored signature
verifies, so an exit can never fail later because of the bytes we took in. VTXOs whose key the wallet does
not hold are still imported (anyone may broadcast an exit), and their info says the claim needs the key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncSession

from exitd.ark.encoding import OutPoint, TxOut, VtxoError
from exitd.ark.exit_tx import ExitChain, validate_vtxo
from exitd.ark.policy import UserPolicy
from exitd.ark.vtxo import Vtxo
from exitd.chain.outputs import BlockUnusable, named_blocks, tx_outputs, unspent_outputs
from exitd.chain.rpc import BitcoinRpc
from exitd.chain.view import BlockRef
from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.vtxos import (
    KnownVtxo,
    StoredVtxo,
    VtxoState,
    add_vtxo,
    amounts_by_state,
    get_vtxo,
    get_vtxos,
    guarded_vtxo_ids,
    known_vtxos,
    list_vtxos,
    mark_vtxo_gone,
    protect_vtxo,
    record_seen,
    set_vtxos_state,
    vtxo_ids_in_state,
)
from exitd.wallet.errors import NoWallet
from exitd.wallet.keys import VtxoKeychain
from exitd.wallet.seed import WalletSeed

log = get_logger("wallet.vtxos")

# A batch bigger than this is refused before decoding anything; import in several requests instead.
MAX_IMPORT_BATCH = 1000


class InvalidVtxoImport(ValueError):
    """One entry of an import batch is not an exitable bark VTXO; nothing of the batch was imported."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"vtxos[{index}]: {reason}")
        self.index = index


class InvalidVtxoId(ValueError):
    """Not of the form `<64 hex txid>:<vout>`."""


class UnknownVtxo(LookupError):
    def __init__(self, vtxo_id: str) -> None:
        super().__init__(f"VTXO {vtxo_id} not found")
        self.resources = [vtxo_id]


class VtxoExiting(ValueError):
    """The VTXO is locked in an exit; the exit must be canceled before the VTXO can be called gone."""

    def __init__(self, vtxo_id: str) -> None:
        super().__init__(
            f"VTXO {vtxo_id} is exiting; cancel its exit first (POST /api/v1/exits/cancel/{vtxo_id})"
        )


def spent_reason(row: StoredVtxo) -> str:
    """Who said a spent VTXO is spent, for the messages that refuse to exit it."""
    if row.gone_at is not None:
        return "you marked it gone"
    if row.seen_state in ("spent", "exited"):
        return f"barkd reports it {row.seen_state}"
    return "its exit was claimed"


class AnchorBlockNeeded(InvalidVtxoImport):
    """The chain anchor is not in the UTXO set and the node has no tx index to find a spent one: only
    the block holding its tx, named by the user, lets exitd check it."""

    def __init__(self, index: int, anchor: OutPoint) -> None:
        txid = anchor.txid_hex
        super().__init__(
            index,
            f"chain anchor {anchor} is not in bitcoind's UTXO set (spent, or its tx not mined yet) and this "
            f"node has no tx index to look a spent one up: name the block holding tx {txid} in the "
            f'import\'s "anchor_blocks" (its hash or height; `exitd import --anchor-block <hash|height>`), '
            f"or import once tx {txid} is in the mempool or a block",
        )


class InvalidAnchorBlock(ValueError):
    """A block named in `anchor_blocks` cannot be searched: no such block, reorged out, or pruned."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"anchor_blocks: {reason}")


def parse_vtxo_id(text: str) -> str:
    """The canonical id string (lowercase txid) or InvalidVtxoId naming the problem."""
    try:
        return str(OutPoint.from_str(text.strip().lower()))
    except ValueError:
        raise InvalidVtxoId(f"invalid VTXO id {text[:100]!r}: expected '<64 hex txid>:<vout>'") from None


@dataclass(frozen=True)
class ImportedVtxo:
    vtxo: Vtxo
    chain: ExitChain
    key_index: int | None


class VtxoBook:
    def __init__(self, store: Store, rpc: BitcoinRpc, seed: WalletSeed, key_search_limit: int) -> None:
        self.store = store
        self.rpc = rpc
        self.seed = seed
        self.key_search_limit = key_search_limit
        self._keychain: VtxoKeychain | None = None

    @property
    def keychain(self) -> VtxoKeychain:
        """bark's VTXO keys of the wallet's mnemonic; NoWallet until a wallet exists."""
        if self._keychain is None:
            self._keychain = VtxoKeychain.from_mnemonic(self.seed.mnemonic)
        return self._keychain

    def _decode(self, index: int, text: object) -> tuple[Vtxo, ExitChain]:
        if not isinstance(text, str):
            raise InvalidVtxoImport(index, f"expected a hex string, got {type(text).__name__}")
        try:
            data = bytes.fromhex(text.strip())
        except ValueError:
            raise InvalidVtxoImport(index, "not valid hex") from None
        if not data:
            raise InvalidVtxoImport(index, "empty")
        try:
            return validate_vtxo(data, allow_unfinished=True)
        except VtxoError as e:
            raise InvalidVtxoImport(index, str(e)) from None

    async def _check_anchors(
        self, decoded: Sequence[tuple[Vtxo, ExitChain]], anchor_blocks: Sequence[str | int]
    ) -> None:
        """Each VTXO's chain anchor is the output its exit chain spends, as far as bitcoind can tell.

        An unspent anchor is read from the UTXO set. A spent one (an exit already under way, a sweep) is
        read from its tx: in the mempool, through the tx index when there is one, or in `anchor_blocks`,
        the blocks the user names as holding anchor txs. Failing that, a tx of the VTXO's own exit chain
        in the UTXO set or the mempool proves the anchor: bitcoind accepted that chain on top of it, so no
        exit tx can fail for it. An anchor found nowhere is accepted, with a warning, only on a node whose
        tx index says it is in no block yet; without an index the user is told which block to name.
        """
        anchors = sorted({v.anchor_point for v, _ in decoded}, key=str)
        unspent = await unspent_outputs(self.rpc, anchors)
        found: dict[OutPoint, TxOut] = dict(unspent.outputs)
        missing = [a for a in anchors if a not in found]
        blocks: list[BlockRef] = []
        if missing:
            try:
                blocks = await named_blocks(self.rpc, anchor_blocks)
                txs = await tx_outputs(self.rpc, sorted({a.txid_hex for a in missing}), blocks)
            except BlockUnusable as e:
                raise InvalidAnchorBlock(str(e)) from None
            for anchor in missing:
                outputs = txs.get(anchor.txid_hex)
                if outputs is None:
                    continue
                if anchor.vout >= len(outputs):
                    first = next(i for i, (v, _) in enumerate(decoded) if v.anchor_point == anchor)
                    raise InvalidVtxoImport(
                        first, f"chain anchor {anchor}: that transaction has only {len(outputs)} outputs"
                    )
                found[anchor] = outputs[anchor.vout]
        for i, (vtxo, chain) in enumerate(decoded):
            on_chain = found.get(vtxo.anchor_point)
            if on_chain is not None and vtxo.anchor_point not in unspent.outputs:
                _log_spent_anchor(vtxo, "its tx")
            if on_chain is not None and on_chain != chain.chain_anchor_txout:
                expected = chain.chain_anchor_txout
                raise InvalidVtxoImport(
                    i,
                    f"chain anchor {vtxo.anchor_point} on chain is {on_chain.value} sat to "
                    f"{on_chain.script_pubkey.hex()}, but the VTXO's exit chain spends "
                    f"{expected.value} sat from {expected.script_pubkey.hex()}",
                )
        unproven = [(i, v, c) for i, (v, c) in enumerate(decoded) if v.anchor_point not in found]
        links = sorted({t.outpoint for _, _, c in unproven for t in c.txs}, key=str)
        exit_outputs = (await unspent_outputs(self.rpc, links)).outputs if links else {}
        for i, vtxo, chain in unproven:
            if any(t.outpoint in exit_outputs for t in chain.txs):
                _log_spent_anchor(vtxo, "its exit chain")
                continue
            anchor = vtxo.anchor_point
            if blocks:
                named = ", ".join(f"{b.hash} (height {b.height})" for b in blocks)
                raise InvalidVtxoImport(
                    i,
                    f"chain anchor {anchor} is spent (bitcoind's UTXO set no longer holds it) and its tx "
                    f"{anchor.txid_hex} is in none of the named anchor blocks: {named}",
                )
            if not unspent.indexed:
                raise AnchorBlockNeeded(i, anchor)
            event(log, logging.WARNING, "vtxo_anchor_unknown", vtxo=str(vtxo.id), anchor=str(anchor))

    async def import_vtxos(
        self, encoded: Sequence[object], protect: bool = False, anchor_blocks: Sequence[str | int] = ()
    ) -> list[StoredVtxo]:
        """Validate every entry, then store them all in one transaction (idempotent per id), fenced: on a
        shared database only the leader imports (NotLeader, nothing stored, elsewhere). `protect`:
        the guard may exit them although no source vouches for them (stale imports are not guarded).
        `anchor_blocks`: hashes or heights of the blocks holding the txs of spent chain anchors, for a
        node without a tx index (see _check_anchors)."""
        if not encoded:
            raise InvalidVtxoImport(0, "no VTXOs given; expected {'vtxos': ['<hex>', ...]}")
        if len(encoded) > MAX_IMPORT_BATCH:
            raise InvalidVtxoImport(MAX_IMPORT_BATCH, f"at most {MAX_IMPORT_BATCH} VTXOs per request")
        decoded = [self._decode(i, text) for i, text in enumerate(encoded)]
        await self._check_anchors(decoded, anchor_blocks)
        now = int(time.time())
        rows: list[StoredVtxo] = []
        async with self.store.session(fenced=True) as session:
            for vtxo, _ in decoded:
                vtxo_id = str(vtxo.id)
                existing = await get_vtxo(session, vtxo_id)
                if existing is not None:
                    if protect and not existing.protect:
                        await protect_vtxo(session, vtxo_id)
                        existing = replace(existing, protect=True)
                    rows.append(existing)
                    continue
                row = self._stored(vtxo, now, protect)
                await add_vtxo(session, row)
                rows.append(row)
                self._log_import(vtxo, row)
        return rows

    def _stored(self, vtxo: Vtxo, now: int, protect: bool) -> StoredVtxo:
        policy = vtxo.policy
        assert isinstance(policy, UserPolicy)
        return StoredVtxo(
            vtxo_id=str(vtxo.id),
            encoded=vtxo.encode(),
            amount_sat=vtxo.amount,
            expiry_height=vtxo.expiry_height,
            exit_delta=vtxo.exit_delta,
            exit_depth=vtxo.exit_depth,
            policy_type=policy.kind,
            user_pubkey=policy.user_pubkey.hex(),
            server_pubkey=vtxo.server_pubkey.hex(),
            chain_anchor=str(vtxo.anchor_point),
            key_index=self.keychain.find_index(policy.user_pubkey, self.key_search_limit),
            state=VtxoState.SPENDABLE,
            imported_at=now,
            preimage=None,
            source="import",
            protect=protect,
            seen_state=None,
            seen_at=None,
            gone_at=None,
        )

    def _log_import(self, vtxo: Vtxo, row: StoredVtxo) -> None:
        fields = {
            "vtxo": row.vtxo_id,
            "amount": row.amount_sat,
            "depth": row.exit_depth,
            "policy": row.policy_type,
        }
        event(log, logging.INFO, "vtxo_imported", **fields)
        if row.key_index is None:
            event(
                log,
                logging.WARNING,
                "vtxo_key_not_held",
                vtxo=row.vtxo_id,
                user_pubkey=row.user_pubkey,
                note="exitable, but claiming needs the owner's key",
            )
        if vtxo.is_unfinished:
            event(
                log, logging.WARNING, "vtxo_unfinished", vtxo=row.vtxo_id, note="not exitable until completed"
            )

    async def get(self, vtxo_id: str) -> StoredVtxo:
        async with self.store.session() as session:
            return await _existing(session, parse_vtxo_id(vtxo_id))

    async def find_many(self, vtxo_ids: Sequence[str]) -> dict[str, StoredVtxo]:
        """The imported ones of these VTXOs, by canonical id; InvalidVtxoId for an id that is not one."""
        ids = [parse_vtxo_id(v) for v in vtxo_ids]
        async with self.store.session() as session:
            return await get_vtxos(session, ids)

    async def get_many(self, vtxo_ids: Sequence[str]) -> list[StoredVtxo]:
        """Rows in the order asked; UnknownVtxo names every id that is not imported."""
        ids = [parse_vtxo_id(v) for v in vtxo_ids]
        rows = await self.find_many(ids)
        missing = [v for v in ids if v not in rows]
        if missing:
            error = UnknownVtxo(", ".join(missing))
            error.resources = missing
            raise error
        return [rows[v] for v in ids]

    async def ids_in_state(self, state: str) -> list[str]:
        async with self.store.session() as session:
            return await vtxo_ids_in_state(session, state)

    async def guarded_ids(self, protect_imports: bool) -> list[str]:
        async with self.store.session() as session:
            return await guarded_vtxo_ids(session, protect_imports)

    async def known(self) -> dict[str, KnownVtxo]:
        async with self.store.session() as session:
            return await known_vtxos(session)

    async def record_seen(self, seen: dict[str, str], spent: Sequence[str], source: str) -> None:
        """What `source` says of each VTXO, and those it spent (exitd holds them spendable no more)."""
        async with self.store.session(fenced=True) as session:
            await record_seen(session, seen, int(time.time()), source)
            await set_vtxos_state(session, spent, "spent")

    async def mark_gone(self, vtxo_id: str) -> StoredVtxo:
        """The user says the VTXO is no longer theirs (forfeited, spent elsewhere): nothing exits it."""
        vtxo_id = parse_vtxo_id(vtxo_id)
        async with self.store.session(fenced=True) as session:
            row = await _existing(session, vtxo_id)
            if row.state is VtxoState.LOCKED:
                raise VtxoExiting(vtxo_id)
            if row.gone_at is None:
                await mark_vtxo_gone(session, vtxo_id, int(time.time()))
                event(log, logging.INFO, "vtxo_marked_gone", vtxo=vtxo_id)
        return await self.get(vtxo_id)

    async def list(self, include_spent: bool) -> list[StoredVtxo]:
        async with self.store.session() as session:
            return await list_vtxos(session, include_spent)

    async def amounts_by_state(self) -> dict[str, int]:
        """Sat held in VTXOs of each state (spendable, locked in an exit, spent); NoWallet before a wallet."""
        if not self.seed.exists:
            raise NoWallet()
        async with self.store.session() as session:
            return await amounts_by_state(session)


def _log_spent_anchor(vtxo: Vtxo, checked_by: str) -> None:
    """An import whose anchor bitcoind has spent: the exit is under way (or the VTXO swept)."""
    event(
        log,
        logging.INFO,
        "vtxo_anchor_spent",
        vtxo=str(vtxo.id),
        anchor=str(vtxo.anchor_point),
        checked_by=checked_by,
    )


async def _existing(session: AsyncSession, vtxo_id: str) -> StoredVtxo:
    row = await get_vtxo(session, vtxo_id)
    if row is None:
        raise UnknownVtxo(vtxo_id)
    return row
