"""barkd's bearer-token auth of every route but the open ones (the token's format: token.py)."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from exitd.api.docs import DOCS_PATHS
from exitd.api.errors import Handler, Unauthorized, error_response
from exitd.api.token import InvalidToken, decode_token

# Paths served without a token, as barkd serves them.
OPEN_PATHS = frozenset({"/ping", "/swagger-ui/", *DOCS_PATHS})


def auth_middleware(secret: bytes, open_paths: frozenset[str] = OPEN_PATHS) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            return error_response(
                Unauthorized("missing Authorization header; send 'Bearer <token>' (exitd token)")
            )
        if scheme.lower() != "bearer" or not token.strip():
            return error_response(Unauthorized("Authorization header must be 'Bearer <token>'"))
        try:
            presented = decode_token(token.strip())
        except InvalidToken as e:
            return error_response(Unauthorized(str(e)))
        if not hmac.compare_digest(presented, secret):
            return error_response(Unauthorized("invalid auth token"))
        return await handler(request)

    return middleware
