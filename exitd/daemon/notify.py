"""systemd's service notification protocol (sd_notify(3)), spoken over the datagram socket systemd names.

With `Type=notify` systemd counts exitd as started only when READY=1 arrives, so `systemctl start exitd`
returns once the REST API answers. With `WatchdogSec=` systemd restarts exitd when WATCHDOG=1 stops coming:
the pings come from a task on the event loop, so a loop stuck in a blocking call stops them too, which is
the failure the watchdog is there to catch. Outside systemd ($NOTIFY_SOCKET unset) every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from exitd.engine.states import ExitStateKind
from exitd.log import event, get_logger

log = get_logger("notify")

# How often STATUS= is refreshed when no watchdog asks for a faster beat.
STATUS_INTERVAL = 5.0


def socket_address(value: str) -> str | None:
    """The address in $NOTIFY_SOCKET: a path, or '@name' for the abstract namespace; None if neither."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises.

    None when no watchdog is asked for, or when $WATCHDOG_PID names another process (the variables were
    inherited, not meant for us).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    return int(usec) / 1_000_000 / 2


class SystemdNotifier:
    """Sends notification messages to systemd; silent when not run by systemd."""

    def __init__(self, address: str | None, watchdog: float | None) -> None:
        self.address = address
        self.watchdog = watchdog

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> SystemdNotifier:
        address = socket_address(environ.get("NOTIFY_SOCKET", ""))
        return cls(address, watchdog_interval(environ, os.getpid()) if address else None)

    def send(self, *assignments: str) -> None:
        """One datagram of newline-separated VAR=value lines; a failure is logged, never raised: systemd
        being unable to hear us must not stop the exits."""
        if self.address is None:
            return
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as e:
            event(log, logging.WARNING, "notify_failed", message=assignments[0], error=str(e))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    async def supervise(self, stopping: asyncio.Event, status: Callable[[], str]) -> None:
        """Until `stopping` is set: WATCHDOG=1 on every watchdog beat, STATUS= whenever it changed and at
        least every STATUS_INTERVAL seconds (so `systemctl status` never shows a stale line for long)."""
        if self.address is None:
            return
        beat = min(self.watchdog, STATUS_INTERVAL) if self.watchdog else STATUS_INTERVAL
        last_status, last_sent = "", 0.0
        while not stopping.is_set():
            lines = ["WATCHDOG=1"] if self.watchdog else []
            current = status()
            if current != last_status or time.monotonic() - last_sent >= STATUS_INTERVAL:
                lines.append(f"STATUS={current}")
                last_status, last_sent = current, time.monotonic()
            if lines:
                self.send(*lines)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=beat)


def status_line(counts: Mapping[ExitStateKind, int], tip: int | None) -> str:
    """What `systemctl status exitd` shows, e.g. '3 exits: 1 processing, 2 claimable; tip 812345'."""
    total = sum(counts.values())
    states = ", ".join(f"{n} {kind.value}" for kind, n in counts.items() if n)
    text = f"{total} exit{'' if total == 1 else 's'}: {states}" if total else "no exits"
    return text if tip is None else f"{text}; tip {tip}"
