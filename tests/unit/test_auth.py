import base64

import pytest

from exitd.api.token import InvalidToken, decode_token, encode_token, new_token


def test_token_is_version_zero_and_32_byte_secret() -> None:
    token = new_token()
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert "=" not in token and len(raw) == 33 and raw[0] == 0
    assert decode_token(token) == raw[1:]


def test_round_trip() -> None:
    secret = bytes(range(32))
    assert decode_token(encode_token(secret)) == secret
    assert encode_token(secret) == "AAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("", "malformed"),
        ("not base64 !", "base64url"),
        (base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "length"),
        (base64.urlsafe_b64encode(b"\x01" + bytes(32)).decode().rstrip("="), "version 1"),
        ("A" * 200, "malformed"),
    ],
)
def test_malformed_tokens(token: str, why: str) -> None:
    with pytest.raises(InvalidToken, match=why):
        decode_token(token)
