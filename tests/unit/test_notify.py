"""sd_notify over real AF_UNIX datagram sockets (a path and the abstract namespace), and what is sent."""

import asyncio
import logging
import os
import socket
from pathlib import Path

import pytest

from exitd.api.prometheus import exits_by_state
from exitd.daemon.notify import SystemdNotifier, socket_address, status_line, watchdog_interval
from exitd.engine.states import ExitStateKind


def test_socket_address_spellings() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract") == "\0abstract"
    assert socket_address("") is None and socket_address("relative/path") is None


def test_watchdog_interval_is_half_and_only_for_us() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=7) is None
    assert watchdog_interval({}, pid=7) is None


def test_messages_reach_an_notify_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, env_value = notify_socket
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": env_value})
    notifier.ready("no exits")
    assert sock.recv(4096).decode().split("\n") == ["READY=1", "STATUS=no exits", f"MAINPID={os.getpid()}"]
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_messages_reach_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        SystemdNotifier.from_environ({"NOTIFY_SOCKET": str(path)}).send("STATUS=hello")
        assert sock.recv(4096) == b"STATUS=hello"


def test_a_missing_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("exitd"), "propagate", True)  # off once a daemon set up its logs
    with caplog.at_level(logging.WARNING, logger="exitd.notify"):
        SystemdNotifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready("x")
    (record,) = caplog.records
    assert (record.name, record.levelname, record.getMessage()) == (
        "exitd.notify",
        "WARNING",
        "notify_failed",
    )
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["message"] == "READY=1" and "No such file" in fields["error"]


def test_supervise_pings_the_watchdog_and_refreshes_status(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, env_value = notify_socket
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": env_value, "WATCHDOG_USEC": "100000"})
    assert notifier.watchdog == 0.05

    async def supervise_briefly() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(notifier.supervise(stopping, lambda: "2 exits: 2 claimable"))
        await asyncio.sleep(0.3)
        stopping.set()
        await task

    asyncio.run(supervise_briefly())
    messages = []
    sock.settimeout(0.5)
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    assert len(messages) >= 3 and all(m.startswith("WATCHDOG=1") for m in messages)
    assert messages[0] == "WATCHDOG=1\nSTATUS=2 exits: 2 claimable"
    assert "STATUS=" not in messages[1]  # unchanged status is not resent on every beat


def test_status_line() -> None:
    counts = exits_by_state([])
    assert status_line(counts, None) == "no exits"
    counts[ExitStateKind.PROCESSING] = 1
    assert status_line(counts, 812345) == "1 exit: 1 processing; tip 812345"
    counts[ExitStateKind.CLAIMABLE] = 2
    assert status_line(counts, 812345) == "3 exits: 1 processing, 2 claimable; tip 812345"
