"""The bitcoind JSON-RPC layer against a real regtest node."""

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


async def test_wrong_password_is_typed(bitcoind: RegtestNode) -> None:
    rpc = BitcoinRpc(bitcoind.rpc_url, RpcCredentials(RPC_USER, "wrong"))
    try:
        with pytest.raises(RpcAuthFailed, match="credentials"):
            await rpc.call("getblockcount")
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
