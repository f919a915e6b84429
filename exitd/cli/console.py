"""What the CLI shows a person: tables and short lines made from the daemon's JSON answers (barkd's shapes).

Presentation only: every fact shown is in the answer; this module only chooses words and layout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

# What an exit waits for, by the type of its first unconfirmed exit tx (0.1.4's and 0.6.0's names).
NEXT_FOR_TX_STATUS = {
    "verify-inputs": "check the exit tx's inputs",
    "awaiting-input-confirmation": "wait for the parent tx to confirm",
    "needs-signed-package": "fund and broadcast a CPFP package",
    "needs-replacement-package": "bump the fee with a replacement package",
    "awaiting-cpfp-broadcast": "fund and broadcast a CPFP package",
    "needs-broadcasting": "broadcast the stored package",
    "broadcast-with-cpfp": "wait for the package to confirm",
    "awaiting-confirmation": "wait for the package to confirm",
}

NO_VALUE = "-"
# States of an exit tx whose package is out (in a mempool): cancelling the exit does not call it back.
IN_FLIGHT_TX_STATUSES = frozenset(
    {"broadcast-with-cpfp", "needs-replacement-package", "awaiting-confirmation"}
)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded (no trailing blanks)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def sat(amount: int) -> str:
    return f"{amount:,} sat"


def short_txid(txid: str) -> str:
    """A txid cut to what a person compares at a glance; tables stay narrow (`--json` has it whole)."""
    return f"{txid[:8]}…{txid[-4:]}" if len(txid) == 64 else txid


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def exit_error_text(error: Mapping[str, Any] | None) -> str:
    """barkd's ExitError in one line: its type, then its fields ('error' text last, unlabelled)."""
    if not error:
        return ""
    fields = [f"{k}={v}" for k, v in error.items() if k not in ("type", "error")]
    text = " ".join([str(error.get("type", "error")), *fields])
    return f"{text}: {error['error']}" if "error" in error else text


def exit_level(status: Mapping[str, Any]) -> str:
    """'confirmed exit txs / depth' of an exit status fetched with transactions=true."""
    state = status["state"]
    kind = state["type"]
    depth = len(status.get("transactions") or state.get("transactions") or ())
    if kind == "canceled" or depth == 0:
        return NO_VALUE
    if kind == "start":
        confirmed = 0
    elif kind == "processing":
        confirmed = sum(1 for tx in state["transactions"] if tx["status"]["type"] == "confirmed")
    else:
        confirmed = depth
    return f"{confirmed}/{depth}"


def next_action(state: Mapping[str, Any]) -> str:
    """What the exit waits for next, in words."""
    kind = state["type"]
    if kind == "start":
        return NEXT_FOR_TX_STATUS["verify-inputs"]
    if kind == "processing":
        pending = [
            tx["status"]["type"] for tx in state["transactions"] if tx["status"]["type"] != "confirmed"
        ]
        return NEXT_FOR_TX_STATUS.get(pending[0], pending[0]) if pending else "wait for the next cycle"
    if kind == "awaiting-delta":
        return f"wait for height {state['claimable_height']} (exit delta)"
    if kind == "claimable":
        return "claim it: exitd claim --to ADDRESS"
    if kind == "claim-in-progress":
        return f"wait for claim tx {short_txid(state['claim_txid'])} to confirm"
    return NO_VALUE


def status_table(statuses: Sequence[Mapping[str, Any]], amounts: Mapping[str, int]) -> str:
    if not statuses:
        return "no exits (import VTXOs with 'exitd import', then 'exitd start --all')"
    rows = [
        (
            s["vtxo_id"],
            sat(amounts[s["vtxo_id"]]) if s["vtxo_id"] in amounts else NO_VALUE,
            s["state"]["type"],
            exit_level(s),
            next_action(s["state"]),
            exit_error_text(s.get("error")),
        )
        for s in statuses
    ]
    return table(("VTXO", "AMOUNT", "STATE", "LEVEL", "NEXT", "ERROR"), rows)


def node_text(node: Mapping[str, Any]) -> str:
    """GET /bitcoin/node in a line (and a line per problem)."""
    pruned = f"pruned below {node['prune_height']}" if node["pruned"] else "not pruned"
    read = node.get("blocks_read_to")
    line = (
        f"bitcoind {node['version']} on {node['chain']} at {node['height']}: wallets {node['wallets']}, "
        f"{pruned}, tx index {node['txindex']} (not needed); blocks read to "
        f"{read['height'] if read else NO_VALUE}"
    )
    return "\n".join([line, *(f"problem: {p}" for p in node["problems"])])


def funding_text(funding: Mapping[str, Any]) -> str:
    """The wallet's funding plan (the `funding` of GET /exits/fee) in one line: the coins it needs and
    has, the blocks this wallet costs beyond one level per block, and what is missing."""
    parts = [
        f"funding: {funding['coins_needed']} coins needed (up to {sat(funding['coin_size_sat'])} each), "
        f"{funding['coins_available']} available, {funding['coins_arriving']} arriving next block"
    ]
    extra, limit = funding["extra_blocks"], funding["blocks_needed"]
    if extra is None:
        parts.append("the wallet cannot finish the exits")
    elif extra:
        parts.append(f"{extra} block{'s' if extra > 1 else ''} beyond the {limit}-block limit")
    else:
        parts.append(f"one level per block ({limit} block{'s' if limit > 1 else ''} left)")
    if funding["missing_sat"]:
        parts.append(f"{sat(funding['missing_sat'])} missing")
    if funding["split_txid"]:
        parts.append(f"split {funding['split_txid']} confirming")
    return "; ".join(parts)


def progress_text(progress: Mapping[str, Any]) -> str:
    exits = progress["exits"]
    rows = [
        (e["vtxo_id"], e["state"]["type"], next_action(e["state"]), exit_error_text(e.get("error")))
        for e in exits
    ]
    lines = [table(("VTXO", "STATE", "NEXT", "ERROR"), rows)] if rows else ["no exits in progress"]
    return "\n".join([*lines, progress_conclusion(progress)])


def progress_conclusion(progress: Mapping[str, Any]) -> str:
    if progress["done"] and progress.get("claimable_height") is not None:
        return f"all exit txs confirmed; claimable from height {progress['claimable_height']}"
    if progress["done"]:
        return "nothing left to confirm"
    return "exits still confirming; the daemon keeps going on its own every block"


def vtxo_table(vtxos: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            v["id"],
            sat(v["amount_sat"]),
            v["policy_type"],
            str(v["expiry_height"]),
            str(v["exit_depth"]),
            "yes" if v.get("key_held") else "no",
            v["state"]["type"],
            str(v.get("source", "import")) + (" (protected)" if v.get("protected") else ""),
            seen_text(v),
        )
        for v in vtxos
    ]
    header = ("VTXO", "AMOUNT", "POLICY", "EXPIRY", "DEPTH", "KEY HELD", "STATE", "SOURCE", "SEEN")
    return table(header, rows)


def seen_text(vtxo: Mapping[str, Any]) -> str:
    """What the source last said of a VTXO, and when; or that the user marked it gone."""
    if vtxo.get("gone_at"):
        return f"gone (marked {utc(vtxo['gone_at'])})"
    seen = vtxo.get("seen")
    if not seen:
        return "-"
    return f"{seen['state']} ({utc(seen['at'])})"


def utc(stamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def source_text(source: Mapping[str, Any]) -> str:
    """One line: where VTXOs come from and how fresh that is."""
    if source.get("kind") != "barkd":
        return "source: imports only (no barkd followed; imported VTXOs are guarded only when protected)"
    last = source.get("last_sync_at")
    line = f"source: barkd at {source['url']}, last sync {utc(last) if last else 'never'}"
    if source.get("error"):
        line += f"; failing: {source['error']}"
    return line


def balance_text(balance: Mapping[str, Any]) -> str:
    rows = [
        ("confirmed", sat(balance["confirmed_sat"])),
        ("pending (own)", sat(balance["trusted_pending_sat"])),
        ("pending (received)", sat(balance["untrusted_pending_sat"])),
        ("immature", sat(balance["immature_sat"])),
        ("total", sat(balance["total_sat"])),
    ]
    return table(("BALANCE", ""), rows)


class ExitsView:
    """Where each exit is, block by block: a table redrawn in place on a terminal, otherwise one plain
    line per exit whose state, level or fees changed (a log or a pipe gets no escape codes). `column` adds
    a column (header, text by VTXO); then only its VTXOs are shown."""

    def __init__(self, out: TextIO, column: tuple[str, Mapping[str, str]] | None = None) -> None:
        self.out = out
        self.column = column
        self.live = out.isatty()
        self._drawn_lines = 0
        self._shown: dict[str, tuple[str, str, int]] = {}

    def show(self, height: int, statuses: Sequence[Mapping[str, Any]]) -> None:
        by_id = {s["vtxo_id"]: s for s in statuses}
        shown = list(self.column[1]) if self.column else list(by_id)
        rows = {
            vtxo: (s["state"]["type"], exit_level(s), int(s.get("fees_paid_sat", 0)))
            for vtxo in shown
            if (s := by_id.get(vtxo)) is not None
        }
        if self.live:
            self._redraw(height, rows)
            return
        for vtxo, row in rows.items():
            if self._shown.get(vtxo) != row:
                state, level, fees = row
                print(f"height {height}  {vtxo}  {state}  level {level}  fees {sat(fees)}", file=self.out)
        self._shown = rows
        self.out.flush()

    def _redraw(self, height: int, rows: Mapping[str, tuple[str, str, int]]) -> None:
        extra = self.column
        headers = ("VTXO", *((extra[0],) if extra else ()), "STATE", "LEVEL", "FEES SO FAR")
        text = table(
            headers,
            [(v, *((extra[1][v],) if extra else ()), s, lvl, sat(f)) for v, (s, lvl, f) in rows.items()],
        )
        lines = [f"height {height}", *text.splitlines()]
        # Up to the first line drawn last time, clear to the end of the screen, draw again.
        prefix = f"\x1b[{self._drawn_lines}F\x1b[J" if self._drawn_lines else ""
        self.out.write(prefix + "\n".join(lines) + "\n")
        self.out.flush()
        self._drawn_lines = len(lines)


def start_text(outcome: Mapping[str, Any]) -> str:
    """What `exitd start` did: exits started, restarted (cancelled before) and skipped, each with why."""
    lines = []
    restarted = outcome["restarted"]
    new = [vtxo for vtxo in outcome["started"] if vtxo not in restarted]
    if new:
        lines.append(f"started {plural(len(new), 'exit')}:")
        lines += [f"  {vtxo}" for vtxo in new]
    if restarted:
        lines.append(f"restarted {plural(len(restarted), 'exit')} you had canceled:")
        lines += [f"  {vtxo}" for vtxo in restarted]
    if outcome["skipped"]:
        lines.append(f"skipped {len(outcome['skipped'])}:")
        lines += [f"  {s['vtxo_id']}  {s['reason']}" for s in outcome["skipped"]]
    if not outcome["started"]:
        lines.insert(0, "no exit started")
    return "\n".join(lines)


def cancel_text(outcome: Mapping[str, Any]) -> str:
    lines = [f"canceled the exit of {outcome['vtxo_id']}"]
    out = outcome["packages_out"]
    if out:
        lines.append(
            f"warning: {plural(len(out), 'package')} of this exit already broadcast will still confirm "
            "(their fees are spent; a later start continues from them):"
        )
        lines += [f"  exit tx {p['txid']} (child {p['child_txid'] or NO_VALUE})" for p in out]
    return "\n".join(lines)


def why_not_claimable(state: Mapping[str, Any]) -> str:
    kind = state["type"]
    if kind == "awaiting-delta":
        return f"claimable from height {state['claimable_height']} (exit delta)"
    if kind == "claim-in-progress":
        return f"already being claimed by {state['claim_txid']}"
    return f"its exit is {kind}: {next_action(state)} first"


def claim_text(outcome: Mapping[str, Any]) -> str:
    """What `exitd claim` broadcast: the exits it spends, amounts in and out, fee, txid; what it left."""
    lines = [
        f"claimed {plural(len(outcome['vtxos']), 'exit')} to {outcome['destination']}: "
        f"{sat(outcome['amount_sat'])} in, fee {sat(outcome['fee_sat'])}, {sat(outcome['net_sat'])} out",
        f"claim txid {outcome['txid']}",
        *(f"  {vtxo}" for vtxo in outcome["vtxos"]),
    ]
    if outcome["not_claimed"]:
        lines.append(f"not claimable yet: {len(outcome['not_claimed'])}")
        lines += [f"  {n['vtxo_id']}  {n['reason']}" for n in outcome["not_claimed"]]
    return "\n".join(lines)


def sent_text(outcome: Mapping[str, Any]) -> str:
    """What `exitd send`/`drain` broadcast: amount to whom, the fee, the txid."""
    return (
        f"sent {sat(outcome['amount_sat'])} to {outcome['destination']}, fee {sat(outcome['fee_sat'])}\n"
        f"txid {outcome['txid']}"
    )
