"""The one place where exceptions become HTTP answers, in barkd's error shapes.

barkd answers 400 `{message}`, 404 `{message, resources}`, 500 `{message}`. Domain layers raise their own
typed errors; the table in `error_middleware` decides their status. Nothing here echoes request secrets,
and unexpected exceptions are logged with their trace but answered with a plain message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from exitd.api.context import services_of
from exitd.ark.bip39 import InvalidMnemonic
from exitd.chain.rpc import NodeUnreachable, RpcAuthFailed, RpcError, RpcInWarmup
from exitd.engine.errors import (
    CannotCancelExit,
    ClaimFeeExceedsOutput,
    ClaimMarketUnknown,
    ClaimMissingInputs,
    ClaimMissingSignableClause,
    DustLimit,
    ExitError,
    InvalidWalletState,
    NotExiting,
    StartRefused,
    VtxoAlreadySpent,
    VtxoNotClaimable,
    WalletCannotFund,
)
from exitd.log import event, get_logger
from exitd.store.errors import NotLeader
from exitd.wallet.address import InvalidAddress
from exitd.wallet.errors import (
    AmountBelowDust,
    InsufficientFunds,
    NoWallet,
    WalletDisabled,
    WalletExists,
    WalletMismatch,
)
from exitd.wallet.vtxos import (
    InvalidAnchorBlock,
    InvalidVtxoId,
    InvalidVtxoImport,
    UnknownVtxo,
    VtxoExiting,
)

log = get_logger("api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than 2xx that a handler decided on."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class NotFound(ApiError):
    status = 404

    def __init__(self, message: str, resources: list[str] | None = None) -> None:
        super().__init__(message)
        self.resources = resources or []

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "resources": self.resources}


class BodyTimeout(ApiError):
    """The body did not arrive in time; the connection is closed after the answer, not kept alive for a
    client that may still be trickling the rest."""

    status = 408


class ClientGone(ApiError):
    """The client closed its connection before sending its body: nobody is left to answer."""

    status = 400


class NotImplementedByExitd(ApiError):
    status = 501


def json_body(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def json_response(data: Any, status: int = 200) -> web.Response:
    return json_body_response(json_body(data), status)


def json_body_response(body: bytes, status: int = 200) -> web.Response:
    """An answer whose JSON is already encoded (a cached or shared rendering)."""
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status)


# Every domain error the API can meet, and its status: the one table that decides.
_STATUS_BY_ERROR: dict[type[BaseException], int] = {
    InvalidVtxoImport: 400,
    InvalidAnchorBlock: 400,
    InvalidVtxoId: 400,
    InvalidAddress: 400,
    # The on-chain wallet's.
    NoWallet: 400,
    WalletExists: 400,
    InvalidMnemonic: 400,
    InsufficientFunds: 400,
    AmountBelowDust: 400,
    WalletMismatch: 500,
    WalletDisabled: 500,
    UnknownVtxo: 404,
    VtxoExiting: 400,
    # The exit engine's errors met while serving a request (not those reported per exit).
    DustLimit: 400,
    InvalidWalletState: 400,
    VtxoAlreadySpent: 400,
    StartRefused: 400,
    WalletCannotFund: 400,
    VtxoNotClaimable: 400,
    ClaimMissingInputs: 400,
    ClaimMissingSignableClause: 400,
    ClaimFeeExceedsOutput: 400,
    # A claim without fee_rate nobody can price now: the message says to pass one.
    ClaimMarketUnknown: 400,
    CannotCancelExit: 400,
    NotExiting: 404,
    ExitError: 500,
    # A standby, or a deposed leader, of several exitd on one PostgreSQL database: the leader serves it.
    NotLeader: 503,
}


def _status_of(exc: BaseException) -> int | None:
    for cls in type(exc).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    return None


def _rpc_message(exc: RpcError) -> str:
    if isinstance(exc, NodeUnreachable | RpcInWarmup):
        return f"bitcoind is unavailable: {exc.message}"
    if isinstance(exc, RpcAuthFailed):
        return f"bitcoind refused exitd: {exc.message}"
    return f"bitcoind error in {exc.method}: {exc.message}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BodyTimeout as e:
        response = error_response(e)
        response.force_close()
        return response
    except ApiError as e:
        return error_response(e)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app._client_max_size
        return json_response({"message": f"request body too large (limit {limit} bytes)"}, 413)
    except web.HTTPNotFound:
        return error_response(NotFound(f"no such endpoint: {request.method} {request.path}"))
    except web.HTTPMethodNotAllowed as e:
        allowed = ", ".join(sorted(e.allowed_methods))
        return json_response(
            {"message": f"{request.method} is not allowed on {request.path}; use {allowed}"}, 405
        )
    except web.HTTPException as e:
        return json_response({"message": e.reason}, e.status)
    except RpcError as e:
        event(log, logging.WARNING, "request_failed", path=request.path, error=str(e))
        return json_response({"message": _rpc_message(e)}, 500)
    except sa.exc.OperationalError as e:
        event(log, logging.ERROR, "database_unwritable", path=request.path, error=str(e.orig))
        return json_response(
            {"message": f"exitd's database cannot be used: {e.orig} (check the datadir's disk)"}, 500
        )
    except Exception as e:
        status = _status_of(e)
        if status is not None:
            body: dict[str, Any] = {"message": str(e)}
            if status == 404:
                body["resources"] = list(getattr(e, "resources", []))
            return json_response(body, status)
        log.exception("unhandled_error", extra={"fields": {"path": request.path}})
        return json_response({"message": f"internal error ({type(e).__name__}); see the daemon log"}, 500)


async def read_body(request: web.Request) -> bytes:
    """The whole body, within `rest.body_timeout`: a client trickling it a byte at a time would otherwise
    hold its connection, and the handler waiting for it, open forever."""
    seconds = services_of(request).config.rest.body_timeout
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise BodyTimeout(f"request body not received in full within {seconds:g} s") from None
    except ConnectionResetError:
        event(log, logging.INFO, "client_gone", path=request.path)
        raise ClientGone("the connection closed before the request body was complete") from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    raw = await read_body(request)
    if not raw:
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
    return data
