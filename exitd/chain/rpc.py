"""Async JSON-RPC client for bitcoind: one keep-alive HTTP connection pool, batched calls, typed errors.

Batching matters: a cycle over thousands of exits asks the node about thousands of transactions, and one
HTTP round trip per question would dominate the cycle. Errors are typed by bitcoind's RPC code so callers
branch on classes, never on message text.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from exitd.log import event, get_logger

log = get_logger("chain.rpc")


class RpcError(Exception):
    """An error answered by bitcoind (code from its rpc/protocol.h) or met on the way to it."""

    code: int | None = None

    def __init__(self, message: str, method: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        where = f"{self.method}: " if self.method else ""
        return f"{where}{self.message}"


class NodeUnreachable(RpcError):
    """bitcoind did not answer at all (down, restarting, wrong URL)."""


class RpcAuthFailed(RpcError):
    """bitcoind refused our credentials (HTTP 401), or we have none to send: the message says which."""


class RpcInWarmup(RpcError):
    code = -28


class RpcMethodNotFound(RpcError):
    code = -32601


class RpcInvalidParams(RpcError):
    code = -32602


class RpcMiscError(RpcError):
    code = -1


class RpcTypeError(RpcError):
    code = -3


class RpcInvalidAddressOrKey(RpcError):
    """Unknown transaction, block or address (-5): often an expected answer, not a failure."""

    code = -5


class RpcInvalidParameter(RpcError):
    code = -8


class RpcDeserializationError(RpcError):
    code = -22


class RpcVerifyError(RpcError):
    code = -25


class RpcVerifyRejected(RpcError):
    code = -26


class RpcVerifyAlreadyInChain(RpcError):
    code = -27


class RpcWalletError(RpcError):
    code = -4


class RpcWalletInsufficientFunds(RpcError):
    code = -6


class RpcWalletNotFound(RpcError):
    code = -18


class RpcWalletAlreadyLoaded(RpcError):
    code = -35


class RpcWalletDisabled(RpcError):
    """The node runs with -disablewallet: the RPC methods of wallets do not exist."""


_ERRORS_BY_CODE: dict[int, type[RpcError]] = {
    cls.code: cls
    for cls in (
        RpcInWarmup,
        RpcMethodNotFound,
        RpcInvalidParams,
        RpcMiscError,
        RpcTypeError,
        RpcInvalidAddressOrKey,
        RpcInvalidParameter,
        RpcDeserializationError,
        RpcVerifyError,
        RpcVerifyRejected,
        RpcVerifyAlreadyInChain,
        RpcWalletError,
        RpcWalletInsufficientFunds,
        RpcWalletNotFound,
        RpcWalletAlreadyLoaded,
    )
    if cls.code is not None
}


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot send {type(value).__name__} to bitcoind")


def rpc_error(code: int, message: str, method: str) -> RpcError:
    cls = _ERRORS_BY_CODE.get(code, RpcError)
    return cls(message, method, code)


@dataclass(frozen=True)
class RpcCredentials:
    """user/password, or a cookie file read before every request (bitcoind rewrites it on each restart)."""

    user: str = ""
    password: str = ""
    cookie_file: Path | None = None

    def authorization(self) -> dict[str, str]:
        """The HTTP Basic header; empty when there is nothing to send. A missing cookie is not an error
        yet: bitcoind removes it when it stops, so an unreachable node explains it better."""
        if self.cookie_file is not None:
            try:
                user_pass = self.cookie_file.read_text().strip()
            except OSError:
                return {}
        elif self.user:
            user_pass = f"{self.user}:{self.password}"
        else:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(user_pass.encode()).decode()}

    def refusal(self) -> str:
        """Why bitcoind answered 401, naming what was tried (never the password or the cookie's secret):
        credentials it rejected, or a cookie exitd could not read and so never sent."""
        if self.cookie_file is None:
            if self.user:
                return f"bitcoind rejected rpc_user {self.user!r} and its password"
            return "exitd has no RPC credentials to send: set bitcoind.rpc_cookie, or rpc_user/rpc_password"
        path = self.cookie_file
        try:
            path.read_bytes()
        except FileNotFoundError:
            return (
                f"exitd sent no credentials: bitcoind's RPC cookie {path} does not exist (is it this "
                "bitcoind's datadir and network? set bitcoind.rpc_cookie to its path, or "
                "rpc_user/rpc_password)"
            )
        except PermissionError:
            return (
                f"exitd sent no credentials: bitcoind's RPC cookie {path} is not readable by this user "
                "(start bitcoind with -rpccookieperms=group and add this user to its group)"
            )
        except OSError as e:
            return f"exitd sent no credentials: bitcoind's RPC cookie {path} cannot be read ({e.strerror})"
        return f"bitcoind rejected the cookie in {path} (is it the cookie of the bitcoind at rpc_url?)"


# Methods that hold the request open until something happens (a block), not until bitcoind is done.
LONG_POLLS = frozenset({"waitforblockheight", "waitfornewblock", "waitforblock"})


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying an unreachable or warming-up node before giving up."""

    attempts: int = 3
    first_delay: float = 0.25
    max_delay: float = 5.0


NO_RETRY = RetryPolicy(attempts=1)


class BitcoinRpc:
    """A bitcoind JSON-RPC endpoint; `wallet` selects `/wallet/<name>` for wallet calls."""

    def __init__(
        self,
        url: str,
        credentials: RpcCredentials,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retry = retry
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        # Counters the benchmarks and metrics read. Latency leaves out the long polls (LONG_POLLS), which
        # wait for a block by design: counted in, they would make a healthy node look seconds slow.
        self.round_trips = 0
        self.failures = 0
        self.latency_total = 0.0
        self.latency_count = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=8, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._session

    def _endpoint(self, wallet: str | None) -> str:
        return f"{self.url}/wallet/{wallet}" if wallet is not None else self.url

    async def call(
        self, method: str, *params: Any, wallet: str | None = None, retry: RetryPolicy | None = None
    ) -> Any:
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        reply = await self._post(request, method, wallet, retry or self.retry)
        return self._result(reply, method)

    async def batch(
        self,
        calls: Iterable[tuple[str, Sequence[Any]]],
        wallet: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[Any]:
        """Several calls in one HTTP round trip; each answer is its result or its RpcError (not raised)."""
        requests = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": list(params)}
            for i, (method, params) in enumerate(calls)
        ]
        if not requests:
            return []
        label = f"batch[{len(requests)}]"
        replies = await self._post(requests, label, wallet, retry or self.retry)
        if not isinstance(replies, list):
            raise RpcError(f"expected a list of replies, got {type(replies).__name__}", label)
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        answers: list[Any] = []
        for req in requests:
            reply = by_id.get(req["id"])
            if reply is None:
                answers.append(RpcError("no reply in batch", str(req["method"])))
                continue
            try:
                answers.append(self._result(reply, str(req["method"])))
            except RpcError as e:
                answers.append(e)
        return answers

    @staticmethod
    def _result(reply: Any, method: str) -> Any:
        if not isinstance(reply, dict):
            raise RpcError("malformed reply", method)
        error = reply.get("error")
        if error:
            code = error.get("code", 0) if isinstance(error, dict) else 0
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise rpc_error(int(code), str(message), method)
        return reply.get("result")

    async def _post(self, payload: Any, label: str, wallet: str | None, retry: RetryPolicy) -> Any:
        delay = retry.first_delay
        for attempt in range(1, retry.attempts + 1):
            try:
                return await self._post_once(payload, label, wallet)
            except (NodeUnreachable, RpcInWarmup) as e:
                if attempt == retry.attempts:
                    raise
                event(log, logging.DEBUG, "rpc_retry", method=label, attempt=attempt, error=e.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry.max_delay)
        raise AssertionError("unreachable")

    async def _post_once(self, payload: Any, label: str, wallet: str | None) -> Any:
        session = self._get_session()
        started = time.monotonic()
        self.round_trips += 1
        try:
            async with session.post(
                self._endpoint(wallet),
                data=json.dumps(payload, default=_json_default),
                headers={"Content-Type": "application/json", **self.credentials.authorization()},
            ) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientConnectionError, TimeoutError, OSError) as e:
            self.failures += 1
            reason = str(e) or type(e).__name__
            raise NodeUnreachable(f"bitcoind at {self.url} is not reachable ({reason})", label) from None
        finally:
            if label not in LONG_POLLS:
                self.latency_total += time.monotonic() - started
                self.latency_count += 1
        if status == 401:
            self.failures += 1
            raise RpcAuthFailed(f"{self.credentials.refusal()} (HTTP 401)", label)
        if status == 403:
            self.failures += 1
            raise RpcAuthFailed("bitcoind refused this RPC method or client (rpcwhitelist/rpcallowip)", label)
        try:
            parsed = json.loads(body, parse_float=Decimal)
        except ValueError:
            self.failures += 1
            if status == 404 and wallet is not None:
                raise RpcWalletDisabled(
                    "bitcoind has no wallet support (started with -disablewallet); exitd needs it", label
                ) from None
            raise RpcError(f"bitcoind answered HTTP {status} without JSON", label) from None
        first = parsed[0] if isinstance(parsed, list) and parsed else parsed
        error = first.get("error") if isinstance(first, dict) else None
        if isinstance(error, dict) and error.get("code") == RpcInWarmup.code:
            raise RpcInWarmup(str(error.get("message", "bitcoind is starting up")), label)
        return parsed
