"""Starting exits: which VTXOs can be exited, and the exit txs each one needs.

VTXOs are read START_BATCH at a time, each exit chain rebuilt, reduced to its txids and the txs not
tracked yet, and dropped: every row and rebuilt chain held at once would be hundreds of MB at thousands
of exits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bitcoin.core import b2lx

from exitd.ark.exit_tx import ExitChain, build_exit_chain
from exitd.ark.weight import tx_vsize
from exitd.engine.admission import Candidate, candidate
from exitd.engine.errors import DustLimit, InvalidWalletState, StartRefused, VtxoAlreadySpent
from exitd.engine.model import LiveExit, TrackedTx
from exitd.engine.states import ExitState, ExitStateKind
from exitd.log import event, get_logger
from exitd.store.vtxos import StoredVtxo
from exitd.wallet.mempool_rules import dust_threshold
from exitd.wallet.vtxos import VtxoBook, spent_reason

log = get_logger("engine")

# barkd's dust check on a VTXO before its exit starts: a P2TR output below this cannot be relayed.
P2TR_DUST = 330
# VTXOs a start reads and rebuilds the exit chains of between two looks at the event loop.
START_BATCH = 50


def check_relayable(vtxo_id: str, amount: int, chain: ExitChain) -> None:
    """bitcoind relays a zero-fee TRUC parent only with its P2A as the one dust output: any other output
    below its dust threshold (a sub-dust sibling in a tree, a dust VTXO) makes the tx unrelayable, so the
    exit could never complete. Refuse it at start rather than spend fees on its first levels."""
    if amount < P2TR_DUST:
        raise DustLimit(vtxo_id, amount, P2TR_DUST)
    for level, exit_tx in enumerate(chain.txs):
        for vout, out in enumerate(exit_tx.tx.vout):
            dust = dust_threshold(bytes(out.scriptPubKey))
            if vout != exit_tx.fee_anchor_index and out.nValue < dust:
                raise DustLimit(
                    vtxo_id,
                    out.nValue,
                    dust,
                    f"exit tx {level} of {vtxo_id} has output {vout} of {out.nValue} sat, below the dust "
                    f"limit of {dust}: bitcoind will not relay it, so this VTXO cannot be exited",
                )


def exit_chain_of(row: StoredVtxo) -> ExitChain:
    """The exit chain of a stored VTXO that can be exited: finished, and every tx relayable."""
    vtxo = row.vtxo
    if vtxo.is_unfinished:
        raise InvalidWalletState(
            f"VTXO {row.vtxo_id} is not finished (its leaf lacks a preimage or signature)"
        )
    chain = build_exit_chain(vtxo)
    check_relayable(row.vtxo_id, row.amount_sat, chain)
    return chain


def track(chain: ExitChain, known: Mapping[str, TrackedTx], new_txs: dict[str, TrackedTx]) -> list[str]:
    """The chain's txids, root first; its txs in neither `known` nor `new_txs` yet go to `new_txs`."""
    txids: list[str] = []
    input_txid = chain.vtxo.anchor_point.txid_hex
    for exit_tx in chain.txs:
        txid = b2lx(exit_tx.tx.GetTxid())
        if txid not in known and txid not in new_txs:
            new_txs[txid] = TrackedTx(
                txid, exit_tx.tx.serialize(), tx_vsize(exit_tx.tx), input_txid, exit_tx.fee_anchor_index
            )
        txids.append(txid)
        input_txid = txid
    return txids


# Who started an exit on request (the guard's reasons are exitd.engine.guard.StartedBy).
USER = "user"


@dataclass
class Starts:
    """The exits a start makes, and the exit txs they need that are tracked nowhere yet."""

    exits: list[LiveExit] = field(default_factory=list)
    new_txs: dict[str, TrackedTx] = field(default_factory=dict)
    # VTXOs asked for that do not start, and why.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # What admission weighs of each exit (its txids and sizes: the chains themselves are not kept).
    candidates: list[Candidate] = field(default_factory=list)

    def refuse(self, refused: Sequence[StartRefused]) -> None:
        """Leave the refused exits out (skipped, with the refusal as the reason), and the new txs only they
        needed."""
        vtxo_ids = {r.vtxo_id for r in refused}
        self.skipped += [(r.vtxo_id, str(r)) for r in refused]
        self.exits = [e for e in self.exits if e.vtxo_id not in vtxo_ids]
        self.candidates = [c for c in self.candidates if c.vtxo_id not in vtxo_ids]
        needed = {t for e in self.exits for t in e.txids}
        self.new_txs = {t: tx for t, tx in self.new_txs.items() if t in needed}


async def read_starts(
    vtxos: VtxoBook,
    ids: Sequence[str],
    exits: Mapping[str, LiveExit],
    txs: Mapping[str, TrackedTx],
    state: ExitState,
    started_by: str,
    stamp: int,
    strict: bool,
) -> Starts:
    """The exits of `ids` not running yet (a canceled one is started again). `strict`: a VTXO that cannot
    be exited raises (the ids were given); else it is skipped with a log line."""
    starts = Starts()
    for first in range(0, len(ids), START_BATCH):
        for row in await vtxos.get_many(ids[first : first + START_BATCH]):
            existing = exits.get(row.vtxo_id)
            if existing is not None and existing.state.kind is not ExitStateKind.CANCELED:
                starts.skipped.append((row.vtxo_id, f"its exit is already {existing.state.kind.value}"))
                continue
            if row.state == "spent":
                # Only a request names a spent VTXO (start all and the guard take spendable ones).
                raise VtxoAlreadySpent(row.vtxo_id, spent_reason(row))
            try:
                chain = exit_chain_of(row)
            except (DustLimit, InvalidWalletState) as e:
                if strict:
                    raise
                event(log, logging.WARNING, "exit_skipped", vtxo=row.vtxo_id, reason=str(e))
                starts.skipped.append((row.vtxo_id, str(e)))
                continue
            txids = track(chain, txs, starts.new_txs)
            starts.candidates.append(candidate(row.vtxo_id, row.amount_sat, chain))
            starts.exits.append(
                LiveExit(row.vtxo_id, row.amount_sat, row.expiry_height, txids, state, started_by, stamp)
            )
        await asyncio.sleep(0)  # thousands of chains to rebuild: let requests in meanwhile
    return starts
