"""The bitcoind JSON-RPC layer against a real regtest node."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from exitd.chain.node import NodeMismatch, check_node
from exitd.chain.rpc import (
    NO_RETRY,
    BitcoinRpc,
    NodeUnreachable,
    RetryPolicy,
    RpcAuthFailed,
    RpcCredentials,
    RpcInvalidAddressOrKey,
    RpcInvalidParameter,
    RpcMethodNotFound,
)
from exitd.regtest.node import RPC_PASSWORD, RPC_USER, RegtestNode, free_port

pytestmark = pytest.mark.bitcoind


def cookie_rpc(node: RegtestNode, **kw: object) -> BitcoinRpc:
    return BitcoinRpc(node.rpc_url, RpcCredentials(cookie_file=node.cookie_file), **kw)  # type: ignore[arg-type]


async def test_cookie_and_password_auth(bitcoind: RegtestNode) -> None:
    for creds in (RpcCredentials(cookie_file=bitcoind.cookie_file), RpcCredentials(RPC_USER, RPC_PASSWORD)):
        rpc = BitcoinRpc(bitcoind.rpc_url, creds)
        try:
            assert await rpc.call("getblockcount") == bitcoind.height()
        finally:
            await rpc.close()


async def test_rejected_credentials_say_which_were_sent(bitcoind: RegtestNode, tmp_path: Path) -> None:
    stale = tmp_path / ".cookie"
    stale.write_text("__cookie__:" + "00" * 32)
    for creds, sent in (
        (RpcCredentials(RPC_USER, "wrong"), f"bitcoind rejected rpc_user {RPC_USER!r} and its password"),
        (RpcCredentials(cookie_file=stale), f"bitcoind rejected the cookie in {stale}"),
        (RpcCredentials(), "exitd has no RPC credentials to send"),
    ):
        rpc = BitcoinRpc(bitcoind.rpc_url, creds)
        try:
            with pytest.raises(RpcAuthFailed) as raised:
                await rpc.call("getblockcount")
            assert sent in str(raised.value) and "(HTTP 401)" in str(raised.value)
            assert "wrong" not in str(raised.value) and "00" * 32 not in str(raised.value)
        finally:
            await rpc.close()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda path: None, "does not exist (is it this bitcoind's datadir"),
        (lambda path: path.mkdir(), "cannot be read"),
        (lambda path: (path.write_text("x"), path.chmod(0)), "is not readable by this user"),
    ],
    ids=["missing", "a-directory", "unreadable"],
)
async def test_a_cookie_exitd_cannot_read_is_named_not_blamed_on_bitcoind(
    bitcoind: RegtestNode, tmp_path: Path, make: Callable[[Path], object], why: str
) -> None:
    cookie = tmp_path / ".cookie"
    make(cookie)
    if why.startswith("is not readable") and os.access(cookie, os.R_OK):
        pytest.skip("root reads any file: the permission case needs an unprivileged user")
    rpc = BitcoinRpc(bitcoind.rpc_url, RpcCredentials(cookie_file=cookie), retry=NO_RETRY)
    try:
        with pytest.raises(RpcAuthFailed) as raised:
            await rpc.call("getblockcount")
        message = str(raised.value)
        assert f"exitd sent no credentials: bitcoind's RPC cookie {cookie} " in message and why in message
        assert "rejected" not in message
    finally:
        await rpc.close()


async def test_batch_is_one_round_trip_with_per_call_errors(bitcoind: RegtestNode) -> None:
    rpc = cookie_rpc(bitcoind)
    try:
        height = bitcoind.height()
        before = rpc.round_trips
        answers = await rpc.batch(
            [("getblockhash", [h]) for h in range(height + 1)]
            + [("getblockhash", [height + 1000]), ("getrawtransaction", ["00" * 32]), ("nosuchmethod", [])]
        )
        assert rpc.round_trips == before + 1
        assert answers[: height + 1] == [bitcoind.rpc("getblockhash", h) for h in range(height + 1)]
        assert isinstance(answers[-3], RpcInvalidParameter) and answers[-3].code == -8
        assert isinstance(answers[-2], RpcInvalidAddressOrKey) and answers[-2].code == -5
        assert isinstance(answers[-1], RpcMethodNotFound)
        assert await rpc.batch([]) == []
    finally:
        await rpc.close()


async def test_single_call_errors_are_raised_typed(bitcoind: RegtestNode) -> None:
    rpc = cookie_rpc(bitcoind)
    try:
        with pytest.raises(RpcInvalidAddressOrKey) as info:
            await rpc.call("getblockheader", "11" * 32)
        assert info.value.method == "getblockheader"
    finally:
        await rpc.close()


async def test_start_up_checks(bitcoind: RegtestNode) -> None:
    rpc = cookie_rpc(bitcoind)
    try:
        info = await check_node(rpc, "regtest")
        assert info.version >= 29_00_00 and info.chain == "regtest"
        with pytest.raises(NodeMismatch, match="configured for network 'mainnet'"):
            await check_node(rpc, "mainnet")
    finally:
        await rpc.close()


async def test_unreachable_node_then_recovery(private_bitcoind: RegtestNode) -> None:
    rpc = cookie_rpc(private_bitcoind, retry=RetryPolicy(attempts=3, first_delay=0.05))
    try:
        assert await rpc.call("getblockcount") == 0
        private_bitcoind.stop()
        failures = rpc.failures
        with pytest.raises(NodeUnreachable, match="not reachable"):
            await rpc.call("getblockcount")
        assert rpc.failures == failures + 3  # retried with backoff before giving up
        private_bitcoind.start()
        assert (
            await rpc.call("getblockcount", retry=NO_RETRY) == 0
        )  # new cookie re-read, same connection pool
    finally:
        await rpc.close()


async def test_nothing_listening(tmp_path: Path) -> None:
    rpc = BitcoinRpc(
        f"http://127.0.0.1:{free_port()}", RpcCredentials(cookie_file=tmp_path / "none"), retry=NO_RETRY
    )
    try:
        with pytest.raises(NodeUnreachable):
            await rpc.call("getblockcount")
    finally:
        await rpc.close()
