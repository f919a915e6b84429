"""barkd's bearer-token auth: token = base64url (no padding) of version byte 0 || 32-byte secret."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets

from aiohttp import web
from aiohttp.typedefs import Middleware

from exitd.api.errors import Handler, Unauthorized, error_response

AUTH_TOKEN_VERSION = 0
AUTH_SECRET_LEN = 32

# Paths served without a token, as barkd serves them.
OPEN_PATHS = frozenset({"/ping", "/api-docs/openapi.json", "/swagger-ui", "/swagger-ui/"})


class InvalidToken(ValueError):
    pass


def new_token() -> str:
    return encode_token(secrets.token_bytes(AUTH_SECRET_LEN))


def encode_token(secret: bytes) -> str:
    return base64.urlsafe_b64encode(bytes([AUTH_TOKEN_VERSION]) + secret).rstrip(b"=").decode()


def decode_token(token: str) -> bytes:
    """The 32-byte secret inside a token; InvalidToken says why a token is malformed (never echoes it)."""
    if not token or len(token) > 128:
        raise InvalidToken("malformed auth token")
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidToken("auth token is not base64url") from None
    if len(raw) != 1 + AUTH_SECRET_LEN:
        raise InvalidToken("auth token has the wrong length")
    if raw[0] != AUTH_TOKEN_VERSION:
        raise InvalidToken(f"auth token version {raw[0]} is not supported")
    return raw[1:]


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
