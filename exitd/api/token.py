"""barkd's REST bearer token: base64url (no padding) of a version byte 0 and a 32-byte secret.

Its own module, free of aiohttp and the engine, because the CLI reads and checks the token before every
request and must start quickly.
"""

from __future__ import annotations

import base64
import binascii
import secrets

AUTH_TOKEN_VERSION = 0
AUTH_SECRET_LEN = 32


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
