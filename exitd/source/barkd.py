"""Following a running barkd (0.1.4 or 0.6.0) over its REST API: the source of truth for VTXOs.

A bark wallet's VTXOs churn: every payment spends one, every refresh forfeits the old one to the Ark
server shortly before it expires. exitd therefore reads barkd's wallet VTXO list (`GET
/api/v1/wallet/vtxos?all=true`) on start, every `barkd.sync_interval` seconds and, with barkd 0.6, as soon
as `GET /api/v1/notifications/wait` reports that something moved. Each sync:

- imports every VTXO barkd lists as spendable or locked that exitd lacks (`GET
  /api/v1/wallet/vtxos/{id}/encoded`, then verified like any import: chain rebuilt, signatures checked);
- records what barkd said of each VTXO it lists, and when (the guard exits only VTXOs barkd lists
  spendable or locked; `locked` is barkd's, a VTXO in a round or a payment, still the user's);
- makes every VTXO barkd calls `spent` or `exited` spent for exitd too: the guard never exits it and an
  explicit start is refused;
- raises an alert when barkd spent a VTXO exitd is exiting (the exit may now race the server).

When barkd cannot be reached, nothing changes: the VTXOs it last vouched for stay guarded (a wallet gone
offline is when protection matters most), one barkd-unreachable alert is raised per outage, and the
status keeps the time of the last successful sync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from exitd.chain.rpc import RpcError
from exitd.engine.alerts import AlertEvent, Alerts
from exitd.log import event, get_logger
from exitd.store.vtxos import KnownVtxo
from exitd.wallet.vtxos import InvalidVtxoId, InvalidVtxoImport, VtxoBook, parse_vtxo_id

log = get_logger("source.barkd")

SOURCE = "barkd"
# Seconds one long poll of barkd 0.6's notifications may last before it is asked again.
WAIT_TIMEOUT = 300.0
# Seconds one plain request to barkd may take.
REQUEST_TIMEOUT = 30.0


class BarkdState(StrEnum):
    """barkd's VtxoStateInfo types (0.6.0 added `exited`)."""

    SPENDABLE = "spendable"
    LOCKED = "locked"
    SPENT = "spent"
    EXITED = "exited"

    @property
    def gone(self) -> bool:
        return self in (BarkdState.SPENT, BarkdState.EXITED)


# What a sync records for a VTXO that barkd lists no more.
MISSING = "missing"


class BarkdUnavailable(Exception):
    """barkd could not be asked, or answered something that is not barkd's API; the message says which."""


@dataclass(frozen=True)
class BarkdVtxo:
    vtxo_id: str
    state: BarkdState


@dataclass(frozen=True)
class SyncPlan:
    """What one sync changes, decided from exitd's VTXOs and barkd's list alone."""

    imports: tuple[str, ...] = ()
    seen: Mapping[str, str] = field(default_factory=dict)
    spent: tuple[str, ...] = ()
    spent_while_exiting: tuple[str, ...] = ()


def reconcile(known: Mapping[str, KnownVtxo], listed: Sequence[BarkdVtxo]) -> SyncPlan:
    """The changes that bring exitd's VTXOs in line with barkd's list."""
    by_id = {v.vtxo_id: v for v in listed}
    imports = tuple(i for i, v in by_id.items() if i not in known and not v.state.gone)
    seen: dict[str, str] = {}
    spent: list[str] = []
    exiting: list[str] = []
    for vtxo_id, mine in known.items():
        theirs = by_id.get(vtxo_id)
        if theirs is None:
            if mine.source == SOURCE and mine.seen_state != MISSING:
                seen[vtxo_id] = MISSING
            continue
        if mine.seen_state != theirs.state.value or mine.source != SOURCE:
            seen[vtxo_id] = theirs.state.value
        if theirs.state.gone:
            if mine.state == "spendable":
                spent.append(vtxo_id)
            elif mine.state == "locked" and mine.seen_state not in (BarkdState.SPENT, BarkdState.EXITED):
                exiting.append(vtxo_id)
    return SyncPlan(imports, seen, tuple(spent), tuple(exiting))


def parse_vtxo_list(body: Any) -> list[BarkdVtxo]:
    """barkd's `[WalletVtxoInfo]`, reduced to ids and states; BarkdUnavailable when it is not that."""
    if not isinstance(body, list):
        raise BarkdUnavailable(f"GET /api/v1/wallet/vtxos answered a {type(body).__name__}, not a list")
    vtxos = []
    for i, entry in enumerate(body):
        try:
            state = entry["state"]["type"]
            vtxos.append(BarkdVtxo(parse_vtxo_id(entry["id"]), BarkdState(state)))
        except (TypeError, KeyError, ValueError, InvalidVtxoId) as e:
            raise BarkdUnavailable(
                f"GET /api/v1/wallet/vtxos: entry {i} is not a WalletVtxoInfo ({e})"
            ) from None
    return vtxos


@dataclass(frozen=True)
class SourceStatus:
    """What `exitd status` and GET /api/v1/wallet/source tell of the followed barkd."""

    url: str
    last_sync_at: int | None = None  # unix s of the last successful sync
    last_attempt_at: int | None = None
    error: str | None = None  # why the last attempt failed; None when it succeeded
    listed: int = 0  # VTXOs barkd listed at the last successful sync
    notifications: bool | None = None  # barkd serves notifications/wait (0.6); None: not known yet


def read_token(token_file: str) -> str:
    """barkd's auth token from its file; empty when none is configured."""
    if not token_file:
        return ""
    return Path(token_file).expanduser().read_text().strip()


class BarkdClient:
    """barkd's REST API, the three endpoints exitd reads."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, path: str, timeout: float = REQUEST_TIMEOUT, **query: str) -> tuple[int, Any]:
        try:
            async with self._client().get(
                self.url + path, params=query, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                if response.status == 404:
                    return 404, None
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise BarkdUnavailable(f"GET {path} answered HTTP {response.status}: {text}")
                return 200, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise BarkdUnavailable(f"GET {path} failed: {e or type(e).__name__}") from None

    async def vtxos(self) -> list[BarkdVtxo]:
        _, body = await self._get("/api/v1/wallet/vtxos", all="true")
        return parse_vtxo_list(body)

    async def encoded(self, vtxo_id: str) -> str | None:
        """The VTXO's hex encoding; None when barkd no longer knows it."""
        status, body = await self._get(f"/api/v1/wallet/vtxos/{quote(vtxo_id, safe=':')}/encoded")
        if status == 404:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("encoded"), str):
            raise BarkdUnavailable(f"GET /api/v1/wallet/vtxos/{vtxo_id}/encoded: no 'encoded' string")
        return str(body["encoded"])

    async def wait(self, since: str | None) -> tuple[int, str | None] | None:
        """(notifications, last_pushed_at) once barkd has news or its wait ends; None: barkd has no
        notifications/wait (0.1.4)."""
        query = {"since": since} if since else {}
        status, body = await self._get("/api/v1/notifications/wait", WAIT_TIMEOUT + 30, **query)
        if status == 404:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("notifications"), list):
            raise BarkdUnavailable("GET /api/v1/notifications/wait: no 'notifications' list")
        pushed = body.get("last_pushed_at")
        return len(body["notifications"]), pushed if isinstance(pushed, str) else since


class BarkdFollower:
    def __init__(self, client: BarkdClient, vtxos: VtxoBook, alerts: Alerts, interval: float) -> None:
        self.client = client
        self.vtxos = vtxos
        self.alerts = alerts
        self.interval = interval
        self.status = SourceStatus(client.url)
        self._rejected: set[str] = set()
        self._outage_since: int | None = None
        self._news = asyncio.Event()

    async def sync(self) -> SyncPlan | None:
        """One sync; None when barkd could not be read (nothing changed then)."""
        stamp = int(time.time())
        try:
            listed = await self.client.vtxos()
            plan = reconcile(await self.vtxos.known(), listed)
            imported = await self._import(plan.imports)
        except BarkdUnavailable as e:
            self._failed(stamp, str(e))
            return None
        seen = dict(plan.seen)
        states = {v.vtxo_id: v.state.value for v in listed}
        seen.update({i: states[i] for i in imported})
        await self.vtxos.record_seen(seen, plan.spent, SOURCE)
        for vtxo_id in plan.spent_while_exiting:
            self.alerts.raise_once(
                AlertEvent.BARKD_SPENT_EXITING_VTXO, vtxo_id, states[vtxo_id], barkd_state=states[vtxo_id]
            )
        if self._outage_since is not None:
            event(log, logging.INFO, "barkd_reachable", url=self.client.url, down_since=self._outage_since)
            self._outage_since = None
        self.status = replace(
            self.status, last_sync_at=stamp, last_attempt_at=stamp, error=None, listed=len(listed)
        )
        if imported or plan.spent or plan.seen:
            event(
                log,
                logging.INFO,
                "barkd_synced",
                listed=len(listed),
                imported=len(imported),
                spent=len(plan.spent),
                changed=len(plan.seen),
            )
        return plan

    def _failed(self, stamp: int, error: str) -> None:
        self.status = replace(self.status, last_attempt_at=stamp, error=error)
        if self._outage_since is None:
            self._outage_since = stamp
        event(log, logging.WARNING, "barkd_sync_failed", url=self.client.url, error=error)
        self.alerts.raise_once(
            AlertEvent.BARKD_UNREACHABLE,
            "",
            f"down-since:{self._outage_since}",
            url=self.client.url,
            error=error,
            last_sync_at=self.status.last_sync_at or 0,
        )

    async def _import(self, vtxo_ids: Sequence[str]) -> list[str]:
        """Import the VTXOs barkd lists and exitd lacks, one by one: one that fails verification is logged
        (once) and left out, never the others."""
        imported = []
        for vtxo_id in vtxo_ids:
            if vtxo_id in self._rejected:
                continue
            encoded = await self.client.encoded(vtxo_id)
            if encoded is None:
                continue
            try:
                rows = await self.vtxos.import_vtxos([encoded])
            except RpcError as e:  # bitcoind, not barkd: the next sync tries again
                event(log, logging.WARNING, "barkd_import_deferred", vtxo=vtxo_id, error=str(e))
                break
            except InvalidVtxoImport as e:
                self._rejected.add(vtxo_id)
                event(log, logging.WARNING, "barkd_vtxo_rejected", vtxo=vtxo_id, error=str(e))
                continue
            if rows[0].vtxo_id != vtxo_id:
                self._rejected.add(vtxo_id)
                event(
                    log,
                    logging.WARNING,
                    "barkd_vtxo_rejected",
                    vtxo=vtxo_id,
                    error=f"encodes {rows[0].vtxo_id}",
                )
                continue
            imported.append(vtxo_id)
        return imported

    async def run(self, stopping: asyncio.Event) -> None:
        """Sync on start, then every interval and whenever barkd 0.6 has news, until `stopping`."""
        watcher = asyncio.create_task(self._watch_notifications(stopping))
        try:
            while not stopping.is_set():
                try:
                    await self.sync()
                except Exception as e:
                    if self.vtxos.store.stepped_down(e):  # no longer the leader: its term ends this loop
                        event(log, logging.WARNING, "barkd_sync_stopped", error=str(e) or type(e).__name__)
                    else:
                        log.exception("barkd_sync_crashed")
                await self._sleep(stopping)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self.client.close()

    async def _sleep(self, stopping: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self._news.wait())]
        try:
            await asyncio.wait(waits, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        self._news.clear()

    async def _watch_notifications(self, stopping: asyncio.Event) -> None:
        """Long-poll barkd 0.6's notifications; any news wakes the sync. barkd 0.1.4 has none: return."""
        since: str | None = None
        while not stopping.is_set():
            asked = time.monotonic()
            try:
                answer = await self.client.wait(since)
            except BarkdUnavailable as e:
                event(log, logging.DEBUG, "barkd_wait_failed", error=str(e))
                await asyncio.sleep(self.interval)
                continue
            if answer is None:
                self.status = replace(self.status, notifications=False)
                event(log, logging.INFO, "barkd_without_notifications", url=self.client.url)
                return
            self.status = replace(self.status, notifications=True)
            count, since = answer
            if count:
                self._news.set()
            elif time.monotonic() - asked < 1:
                await asyncio.sleep(1)  # a barkd that answers at once with nothing new is not asked in a loop
