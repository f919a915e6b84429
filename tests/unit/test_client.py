"""Where the CLI looks for the daemon, and what it says when nothing answers there."""

import pytest

from exitd.cli.client import DaemonUnreachable, ExitdClient, connect_host
from exitd.regtest.node import free_port


def test_wildcard_listen_addresses_are_reached_on_loopback() -> None:
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "::1"
    assert connect_host("127.0.0.2") == "127.0.0.2"
    assert ExitdClient("::1", 3000, "t").address == "[::1]:3000"


def test_nothing_listening_is_daemon_unreachable_without_the_token() -> None:
    port = free_port()
    client = ExitdClient("127.0.0.1", port, "secret-token-value")
    with pytest.raises(DaemonUnreachable) as raised:
        client.exit_statuses()
    message = str(raised.value)
    assert message.startswith(f"daemon not reachable at 127.0.0.1:{port} — is `exitd run` running?")
    assert "secret-token-value" not in message
