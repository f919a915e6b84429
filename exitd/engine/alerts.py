"""Alerts: what an operator of an unattended daemon must hear about, as a log line and a webhook POST.

Every alert is one log line (`alert alert=<event> vtxo=...`) and, with `alerts.webhook_url` set, one HTTP
POST of a small JSON object:

    {"event": "exit-claimable", "vtxo": "<txid>:<vout>", "txid": "...", <detail fields>, "ts": <unix s>}

(`txid` only where one is meant, `vtxo` only where the alert is about one). An alert is raised at most
once per (event, VTXO, state): the state is where the exit or the VTXO is when the alert is raised
(exitd.engine.guard.exit_stage), so a condition lasting many blocks is told once, and told again only when
the exit moved on; barkd-unreachable is told once per outage. The record is kept in
memory: after a restart a condition still present is told once more, but exits loaded claimable or
claimed are not announced again (Alerts.mark_sent).

Raising an alert never waits: the POST is queued (a bounded queue; when full the alert is dropped and
the drop logged) and one worker sends them in order, retrying a failed POST with exponential backoff.
One worker keeps the order: a receiver sees events in the order they happened, and an endpoint that is
down delays only the alerts behind it, never an exit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

import aiohttp

from exitd.log import event, get_logger

log = get_logger("alerts")

Detail = int | str


class AlertEvent(StrEnum):
    EXIT_STARTED_BY_GUARD = "exit-started-by-guard"
    FOREIGN_BROADCAST_SEEN = "foreign-broadcast-seen"
    FEE_BUDGET_HIT = "fee-budget-hit"
    WALLET_TOO_POOR = "wallet-too-poor"
    EXIT_CLAIMABLE = "exit-claimable"
    EXIT_CLAIMED = "exit-claimed"
    VTXO_AT_RISK = "vtxo-at-risk"
    # An exit in progress that made no progress for STALL_BLOCKS blocks although it could have.
    EXIT_STALLED = "exit-stalled"
    # The followed barkd (exitd/source/barkd.py): it cannot be read; it spent a VTXO exitd is exiting.
    BARKD_UNREACHABLE = "barkd-unreachable"
    BARKD_SPENT_EXITING_VTXO = "barkd-spent-exiting-vtxo"
    # The guard would exit a VTXO whose net recovered is below dust or the floor: it does not.
    VTXO_NOT_WORTH_EXITING = "vtxo-not-worth-exiting"
    # An exit tx's input was spent by a tx not part of the exit: the exit ends (exitd/engine/conflicts.py).
    EXIT_CONFLICTED = "exit-conflicted"
    # Auto-claim would pay more fee than the exits hold (exitd/engine/guard.py): it is tried again only at
    # a market rate that leaves a non-dust output.
    CLAIM_COSTS_MORE_THAN_OUTPUT = "claim-costs-more-than-output"
    # Auto-claim waits: bitcoind has no fee estimate and a backlog hides the market (fee_policy.claim_rate).
    CLAIM_WAITS_FOR_MARKET = "claim-waits-for-market"

    @property
    def level(self) -> int:
        """Problems that need a person are warnings; news of exits going their way is info."""
        if self in (
            AlertEvent.FEE_BUDGET_HIT,
            AlertEvent.WALLET_TOO_POOR,
            AlertEvent.VTXO_AT_RISK,
            AlertEvent.EXIT_STALLED,
            AlertEvent.BARKD_UNREACHABLE,
            AlertEvent.BARKD_SPENT_EXITING_VTXO,
            AlertEvent.VTXO_NOT_WORTH_EXITING,
            AlertEvent.EXIT_CONFLICTED,
            AlertEvent.CLAIM_COSTS_MORE_THAN_OUTPUT,
            AlertEvent.CLAIM_WAITS_FOR_MARKET,
        ):
            return logging.WARNING
        return logging.INFO


@dataclass(frozen=True)
class Alert:
    event: AlertEvent
    vtxo: str
    ts: int
    txid: str | None = None
    detail: Mapping[str, Detail] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"event": self.event.value}
        if self.vtxo:  # an alert about no VTXO (barkd-unreachable) has none
            doc["vtxo"] = self.vtxo
        if self.txid is not None:
            doc["txid"] = self.txid
        return {**doc, **(self.detail or {}), "ts": self.ts}


@dataclass(frozen=True)
class WebhookSettings:
    """Where and how hard alerts are POSTed; an empty `url`: log lines only."""

    url: str = ""
    timeout: float = 5.0  # seconds per attempt
    max_attempts: int = 8
    queue_size: int = 1000
    first_backoff: float = 1.0  # seconds before the first retry, doubling each time
    max_backoff: float = 60.0


class Delivery(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


def delivery_of(status: int) -> Delivery:
    """A 2xx took the alert; 408, 429 and 5xx may take it later; any other answer never will."""
    if 200 <= status < 300:
        return Delivery.DELIVERED
    if status in (408, 429) or status >= 500:
        return Delivery.RETRY
    return Delivery.REJECTED


def backoff_delay(attempt: int, first: float, cap: float) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): first, 2 first, 4 first ..., at most cap."""
    return float(min(cap, first * 2 ** (attempt - 1)))


class Alerts:
    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=settings.queue_size)
        self._sent: set[tuple[AlertEvent, str, str]] = set()
        # Alerts raised since start, by event: what /metrics counts.
        self.raised: Counter[AlertEvent] = Counter()

    def mark_sent(self, alert: AlertEvent, vtxo: str, state: str) -> None:
        """Treat this alert as already raised (it was, before a restart)."""
        self._sent.add((alert, vtxo, state))

    def raise_once(
        self, alert: AlertEvent, vtxo: str, state: str, txid: str | None = None, **detail: Detail
    ) -> bool:
        """Log and queue the alert unless it was raised before in this state; never waits."""
        key = (alert, vtxo, state)
        if key in self._sent:
            return False
        self._sent.add(key)
        self.raised[alert] += 1
        txid_field = {} if txid is None else {"txid": txid}
        event(log, alert.level, "alert", alert=alert.value, vtxo=vtxo, **txid_field, state=state, **detail)
        if self.settings.url:
            try:
                self.queue.put_nowait(Alert(alert, vtxo, int(time.time()), txid, detail))
            except asyncio.QueueFull:
                event(
                    log,
                    logging.WARNING,
                    "alert_dropped",
                    alert=alert.value,
                    vtxo=vtxo,
                    queued=self.queue.qsize(),
                )
        return True

    async def run(self) -> None:
        """Send queued alerts in order until cancelled (the daemon cancels it when stopping)."""
        if not self.settings.url:
            return
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                alert = await self.queue.get()
                await self._deliver(session, alert)

    async def _deliver(self, session: aiohttp.ClientSession, alert: Alert) -> None:
        settings = self.settings
        for attempt in range(1, settings.max_attempts + 1):
            outcome, why = await self._post(session, alert)
            if outcome is Delivery.DELIVERED:
                event(log, logging.DEBUG, "alert_delivered", alert=alert.event.value, vtxo=alert.vtxo)
                return
            if outcome is Delivery.REJECTED:
                break
            if attempt < settings.max_attempts:
                await asyncio.sleep(backoff_delay(attempt, settings.first_backoff, settings.max_backoff))
        event(
            log,
            logging.WARNING,
            "alert_undelivered",
            alert=alert.event.value,
            vtxo=alert.vtxo,
            attempts=attempt,
            error=why,
        )

    async def _post(self, session: aiohttp.ClientSession, alert: Alert) -> tuple[Delivery, str]:
        try:
            async with session.post(self.settings.url, json=alert.to_json()) as response:
                return delivery_of(response.status), f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            return Delivery.RETRY, str(e) or type(e).__name__
