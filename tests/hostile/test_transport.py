"""Hostile HTTP at the socket: bad tokens on every route, oversize bodies, slow clients, many idle
connections. Each must get a clear 4xx in barkd's {message} shape, or not disturb anyone else."""

from __future__ import annotations

import base64
import re
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from exitd.api.auth import OPEN_PATHS
from exitd.api.token import encode_token
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess, running_daemon

pytestmark = pytest.mark.bitcoind

BAD_AUTHORIZATIONS = [
    None,  # no header at all
    "",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Bearer not-base64url!",
    "Bearer " + "A" * 200,
    "Bearer " + encode_token(b"\x01" * 32),  # well formed, another secret
    "Bearer " + base64.urlsafe_b64encode(b"\x07" + b"\x00" * 32).rstrip(b"=").decode(),  # unknown version
    "Bearer " + encode_token(b"\x00" * 16),  # too short
]


def concrete(template: str) -> str:
    """A request path for a route template: each {parameter} filled with a plausible value."""
    return re.sub(r"\{[^}]+\}", "0" * 64 + ":0", template)


def routes(daemon: DaemonProcess) -> list[tuple[str, str]]:
    """(METHOD, path) of every route of the router, read from the document it builds from the router."""
    status, document = daemon.request("GET", "/api-docs/openapi.json", auth=False)
    assert status == 200
    return [(m.upper(), concrete(p)) for p, ops in document["paths"].items() for m in ops]


def test_every_guarded_route_refuses_every_bad_token(daemon: DaemonProcess) -> None:
    guarded = [(m, p) for m, p in routes(daemon) if p not in OPEN_PATHS]
    assert len(guarded) > 50
    for method, path in guarded:
        for authorization in BAD_AUTHORIZATIONS:
            auth: bool | str = False if authorization is None else authorization
            status, body = daemon.request(method, path, {"vtxos": []}, auth=auth)
            assert status == 401, (method, path, authorization, status, body)
            assert isinstance(body, dict) and set(body) == {"message"} and body["message"], body
    assert "Traceback" not in daemon.log_text()


def test_open_routes_need_no_token(daemon: DaemonProcess) -> None:
    for path in ("/ping", "/api-docs/openapi.json", "/swagger-ui"):
        assert daemon.request("GET", path, auth="Bearer nonsense")[0] == 200


def test_oversize_body_is_413_with_a_message(daemon: DaemonProcess) -> None:
    limit = 1 << 20  # rest.max_body_bytes' default
    for path in ("/api/v1/wallet/import-vtxo", "/api/v1/exits/progress", "/api/v1/exits/claim/all"):
        status, body = daemon.request("POST", path, raw=b'{"vtxos": ["' + b"00" * limit + b'"]}')
        assert status == 413 and f"limit {limit} bytes" in body["message"], (path, status, body)
    status, body = daemon.request("POST", "/api/v1/wallet/import-vtxo", raw=b" " * limit + b"{}")
    assert status == 413
    assert daemon.request("GET", "/api/v1/exits/status")[0] == 200


def connect(daemon: DaemonProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", daemon.port), timeout=10)


@contextmanager
def trickling_client(daemon: DaemonProcess, path: str) -> Iterator[socket.socket]:
    """A client that sends its headers and a promise of 10 kB of body, then nothing more until closed."""
    sock = connect(daemon)
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {daemon.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{".encode()
        )
        yield sock
    finally:
        sock.close()


def timed_status(daemon: DaemonProcess) -> tuple[int, float]:
    start = time.monotonic()
    status, _ = daemon.request("GET", "/api/v1/exits/status")
    return status, time.monotonic() - start


def test_slow_clients_do_not_hold_up_others(daemon: DaemonProcess) -> None:
    with ExitStack() as stack:
        slow = [
            stack.enter_context(trickling_client(daemon, path))
            for path in ("/api/v1/wallet/import-vtxo", "/api/v1/exits/progress", "/api/v1/exits/start/vtxos")
            for _ in range(10)
        ]
        for second in range(3):
            for sock in slow:
                sock.sendall(b" ")  # a byte now and then keeps each request alive, never complete
            status, elapsed = timed_status(daemon)
            assert status == 200 and elapsed < 1.0, (second, elapsed)
            time.sleep(0.3)
        # A client that stops mid-header is no different.
        half = stack.enter_context(connect(daemon))
        half.sendall(b"GET /api/v1/exits/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthor")
        assert timed_status(daemon)[0] == 200
    assert daemon.process is not None and daemon.process.poll() is None
    # Each handler left waiting for a body sees its client go: one quiet line each, no traceback.
    deadline = time.monotonic() + 10
    while daemon.log_text().count("client_gone") < len(slow) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.log_text().count("client_gone") == len(slow)
    assert "Traceback" not in daemon.log_text()


def test_a_body_not_sent_in_time_gets_408_and_the_connection_is_not_kept(
    tmp_path: Path, bitcoind: RegtestNode
) -> None:
    with running_daemon(tmp_path / "exitd", bitcoind, env={"EXITD_REST_BODY_TIMEOUT": "1.0"}) as daemon:
        with ExitStack() as stack:
            slow = [
                stack.enter_context(trickling_client(daemon, path))
                for path in ("/api/v1/wallet/import-vtxo", "/api/v1/exits/progress")
            ]
            started = time.monotonic()
            for sock in slow:
                answer = b""
                while b"}" not in answer:  # the whole {message} body
                    answer += sock.recv(4096)
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 408") and b"Connection: close" in head, answer
                assert b"within 1 s" in body, body
            assert time.monotonic() - started < 10
            assert timed_status(daemon)[0] == 200
        assert "Traceback" not in daemon.log_text()


def test_many_idle_connections_then_a_request_answers(daemon: DaemonProcess) -> None:
    with ExitStack() as stack:
        idle = [stack.enter_context(connect(daemon)) for _ in range(500)]
        status, elapsed = timed_status(daemon)
        assert status == 200 and elapsed < 2.0, elapsed
        for sock in idle[:100]:  # some of them finally ask something, on their own connection
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert all(sock.recv(64).startswith(b"HTTP/1.1 200") for sock in idle[:100])
    assert timed_status(daemon)[0] == 200
