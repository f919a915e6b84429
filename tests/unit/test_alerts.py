"""Alerts: one per (event, VTXO, state), queued without waiting, POSTed in order, retried with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from exitd.engine.alerts import (
    Alert,
    AlertEvent,
    Alerts,
    Delivery,
    WebhookSettings,
    backoff_delay,
    delivery_of,
)
from exitd.regtest.node import free_port

VTXO = "ab" * 32 + ":0"
TXID = "cd" * 32


def quick(url: str, max_attempts: int = 3) -> WebhookSettings:
    """Settings that retry within milliseconds, so a test of the retries stays fast."""
    return WebhookSettings(url, timeout=1.0, max_attempts=max_attempts, first_backoff=0.01, max_backoff=0.02)


def queued(alerts: Alerts) -> list[Alert]:
    items = []
    while not alerts.queue.empty():
        items.append(alerts.queue.get_nowait())
    return items


class Receiver:
    """A webhook endpoint on loopback that answers with the given statuses in turn (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, object]] = []
        self.attempts = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.bodies.append(await request.json())
        return web.Response(status=status)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def stop(worker: asyncio.Task[None]) -> None:
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_payload_is_flat_with_the_event_first_and_the_time_last() -> None:
    alert = Alert(AlertEvent.EXIT_CLAIMED, VTXO, 1_700_000_000, TXID, {"block_height": 812})
    assert alert.to_json() == {
        "event": "exit-claimed",
        "vtxo": VTXO,
        "txid": TXID,
        "block_height": 812,
        "ts": 1_700_000_000,
    }
    assert "txid" not in Alert(AlertEvent.EXIT_CLAIMABLE, VTXO, 1).to_json()


def test_an_alert_is_raised_once_per_state() -> None:
    alerts = Alerts(quick("http://127.0.0.1:9/hook"))
    assert alerts.raise_once(AlertEvent.WALLET_TOO_POOR, VTXO, "processing:0", needed=5000, available=0)
    assert not alerts.raise_once(AlertEvent.WALLET_TOO_POOR, VTXO, "processing:0", needed=5000, available=0)
    assert alerts.raise_once(AlertEvent.WALLET_TOO_POOR, VTXO, "processing:1", needed=5000, available=0)
    alerts.mark_sent(AlertEvent.EXIT_CLAIMED, VTXO, "claimed")
    assert not alerts.raise_once(AlertEvent.EXIT_CLAIMED, VTXO, "claimed")
    assert [(a.event, a.detail) for a in queued(alerts)] == [
        (AlertEvent.WALLET_TOO_POOR, {"needed": 5000, "available": 0})
    ] * 2


def test_without_a_webhook_alerts_are_log_lines_only(caplog: pytest.LogCaptureFixture) -> None:
    alerts = Alerts(WebhookSettings())
    with caplog.at_level(logging.INFO, logger="exitd.alerts"):
        alerts.raise_once(AlertEvent.VTXO_AT_RISK, VTXO, "not-exiting:over-budget", reason="over-budget")
    assert alerts.queue.empty()
    (record,) = caplog.records
    assert record.getMessage() == "alert" and record.levelno == logging.WARNING
    assert getattr(record, "fields") == {  # noqa: B009
        "alert": "vtxo-at-risk",
        "vtxo": VTXO,
        "state": "not-exiting:over-budget",
        "reason": "over-budget",
    }


def test_a_full_queue_drops_the_alert_without_waiting() -> None:
    alerts = Alerts(WebhookSettings("http://127.0.0.1:9/hook", queue_size=1))
    alerts.raise_once(AlertEvent.EXIT_CLAIMABLE, VTXO, "claimable")
    assert alerts.raise_once(AlertEvent.EXIT_CLAIMED, VTXO, "claimed")
    assert [a.event for a in queued(alerts)] == [AlertEvent.EXIT_CLAIMABLE]


def test_which_answers_are_retried() -> None:
    assert [delivery_of(s) for s in (200, 204, 408, 429, 500, 503, 400, 404)] == [
        Delivery.DELIVERED,
        Delivery.DELIVERED,
        Delivery.RETRY,
        Delivery.RETRY,
        Delivery.RETRY,
        Delivery.RETRY,
        Delivery.REJECTED,
        Delivery.REJECTED,
    ]


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_delay(a, 1.0, 60.0) for a in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


async def test_alerts_arrive_in_order_through_retries() -> None:
    receiver = Receiver([503, 500])
    async with serving(receiver) as url:
        alerts = Alerts(quick(url))
        worker = asyncio.create_task(alerts.run())
        alerts.raise_once(
            AlertEvent.EXIT_STARTED_BY_GUARD, VTXO, "expiry-guard@100", started_by="expiry-guard"
        )
        alerts.raise_once(AlertEvent.EXIT_CLAIMABLE, VTXO, "claimable")
        alerts.raise_once(AlertEvent.EXIT_CLAIMED, VTXO, "claimed", txid=TXID)
        await until(lambda: len(receiver.bodies) == 3)
        await stop(worker)
    assert [b["event"] for b in receiver.bodies] == [
        "exit-started-by-guard",
        "exit-claimable",
        "exit-claimed",
    ]
    assert receiver.attempts == 5
    assert receiver.bodies[2]["txid"] == TXID and isinstance(receiver.bodies[2]["ts"], int)


async def test_a_rejecting_endpoint_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver([404])
    async with serving(receiver) as url:
        alerts = Alerts(quick(url))
        worker = asyncio.create_task(alerts.run())
        alerts.raise_once(AlertEvent.EXIT_CLAIMABLE, VTXO, "claimable")
        alerts.raise_once(AlertEvent.EXIT_CLAIMED, VTXO, "claimed")
        await until(lambda: len(receiver.bodies) == 1)
        await stop(worker)
    assert receiver.attempts == 2 and receiver.bodies[0]["event"] == "exit-claimed"
    assert any(r.getMessage() == "alert_undelivered" for r in caplog.records)


async def test_a_dead_endpoint_never_holds_up_the_caller() -> None:
    alerts = Alerts(quick(f"http://127.0.0.1:{free_port()}/hook", max_attempts=2))
    worker = asyncio.create_task(alerts.run())
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(20):
        alerts.raise_once(AlertEvent.EXIT_CLAIMABLE, f"{'ab' * 32}:{i}", "claimable")
    assert loop.time() - started < 0.1
    await until(alerts.queue.empty)
    await stop(worker)
