"""Property tests of every parser hostile input reaches (the VTXO codec has its own, in
tests/unit/test_vtxo_properties.py): each answers a value or its one typed error, never anything else."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exitd.api.errors import BadRequest
from exitd.api.exits import MAX_FEE_RATE, _query_fee_rate, parse_fee_rate
from exitd.api.onchain import MAX_MONEY, parse_amount, whole_number
from exitd.config import KEYS as DECLARED
from exitd.config import ConfigError, load_config
from exitd.wallet.address import (
    Encoding,
    InvalidAddress,
    bech32_encode,
    convertbits,
    decode_address,
    network_hrp,
)
from exitd.wallet.vtxos import InvalidVtxoId, parse_vtxo_id

NETWORKS = ("mainnet", "testnet", "signet", "regtest")
# Text that looks like what it is parsed as, mixed with anything at all.
ADDRESS_LIKE = st.from_regex(
    r"(bc|tb|bcrt)1[02-9ac-hj-np-z]{6,90}|[1-9A-HJ-NP-Za-km-z]{20,40}", fullmatch=True
)
DIGITS = st.from_regex(r"[0-9]{1,5000}", fullmatch=True)


@given(addr=st.one_of(st.text(), ADDRESS_LIKE), network=st.sampled_from(NETWORKS))
def test_decode_address_raises_only_invalid_address(addr: str, network: str) -> None:
    try:
        script = decode_address(addr, network)
    except InvalidAddress as e:
        assert str(e)
    else:
        assert 22 <= len(script) <= 42


@given(
    witver=st.integers(0, 31),
    program=st.binary(max_size=45),
    encoding=st.sampled_from(Encoding),
    network=st.sampled_from(NETWORKS),
)
def test_decode_address_of_any_bech32_string(
    witver: int, program: bytes, encoding: Encoding, network: str
) -> None:
    """Any checksummed bech32 or bech32m string of the network's prefix, of any version and length, decodes
    to a script or is refused by InvalidAddress."""
    data = [witver, *convertbits(program, 8, 5, pad=True)]
    try:
        decode_address(bech32_encode(network_hrp(network), data, encoding), network)
    except InvalidAddress as e:
        assert str(e)


@given(text=st.one_of(st.text(), st.from_regex(r"[0-9a-fA-F]{0,70}:[0-9-]{0,12}", fullmatch=True)))
def test_parse_vtxo_id_raises_only_invalid_vtxo_id(text: str) -> None:
    try:
        vtxo_id = parse_vtxo_id(text)
    except InvalidVtxoId as e:
        assert str(e)
    else:
        assert parse_vtxo_id(vtxo_id) == vtxo_id and len(vtxo_id.split(":")[0]) == 64


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(value=st.one_of(JSON_VALUES, st.integers(-(2**70), 2**70)))
def test_fee_rate_field_is_in_range_or_bad_request(value: Any) -> None:
    try:
        rate = parse_fee_rate({"fee_rate": value})
    except BadRequest as e:
        assert "fee_rate" in e.message
    else:
        assert rate is None or 0 <= rate <= MAX_FEE_RATE


@given(raw=st.one_of(st.text(), DIGITS))
def test_fee_rate_query_is_in_range_or_bad_request(raw: str) -> None:
    request = make_mocked_request("GET", f"/api/v1/exits/fee?fee_rate_sat_per_vb={quote(raw)}")
    try:
        rate = _query_fee_rate(request)
    except BadRequest as e:
        assert "fee_rate_sat_per_vb" in e.message
    else:
        assert rate is None or 0 <= rate <= MAX_FEE_RATE


@given(text=st.one_of(st.text(), DIGITS, st.sampled_from(["²", "٣", "1" * 4301, "-1", "+1", " 1"])))
def test_whole_number_takes_only_ascii_digits(text: str) -> None:
    try:
        number = whole_number(text, "n")
    except BadRequest:
        assert not (text.isascii() and text.isdigit()) or len(text) > 20
    else:
        assert str(number) == text.lstrip("0") or number == 0


@given(text=st.one_of(st.text(), st.from_regex(r"[0-9]{1,5000}(\.[0-9]{0,20})? ?(btc|sat|sats)?")))
def test_amount_is_in_range_or_bad_request(text: str) -> None:
    try:
        sats = parse_amount(text, "amount")
    except BadRequest:
        pass
    else:
        assert 0 <= sats <= MAX_MONEY


TOML_SCALARS = st.one_of(
    st.text(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.sampled_from(["regtest", "mainnet", "127.0.0.1", "http://127.0.0.1:1", "debug", "0.6.0", "wallet"]),
)
TOML_VALUES = st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=3))
KEYS = st.sampled_from(sorted({k for keys in DECLARED.values() for k in keys})) | st.text(min_size=1)


def toml_value(value: Any) -> str:
    """TOML text of a value; strings as basic strings, every character but printable ASCII escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return (
            '"'
            + "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\U{ord(c):08x}" for c in value)
            + '"'
        )
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    """A TOML document of exitd's sections and keys (and unknown ones), with values of any TOML type."""
    lines = [
        f"{toml_value(draw(KEYS))} = {toml_value(draw(TOML_VALUES))}" for _ in range(draw(st.integers(0, 2)))
    ]
    for section in draw(
        st.lists(
            st.sampled_from(sorted(s for s in DECLARED if s)) | st.text(min_size=1), max_size=4, unique=True
        )
    ):
        lines.append(f"[{toml_value(section)}]")
        for _ in range(draw(st.integers(0, 4))):
            lines.append(f"{toml_value(draw(KEYS))} = {toml_value(draw(TOML_VALUES))}")
    return "\n".join(lines) + "\n"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(document=st.one_of(toml_documents(), st.text()))
def test_load_config_raises_only_config_error(tmp_path: Path, document: str) -> None:
    path = tmp_path / "exitd.toml"
    path.write_text(document, encoding="utf-8")
    try:
        config = load_config(path, environ={})
    except ConfigError as e:
        assert str(e)
    else:
        assert config.network in NETWORKS


@pytest.mark.parametrize(
    "document", ['datadir = "a\\u0000b"\n', 'network = "regtest"\n[rest]\nport = 99999\n']
)
def test_load_config_known_hostile_documents(tmp_path: Path, document: str) -> None:
    path = tmp_path / "exitd.toml"
    path.write_text(document)
    with pytest.raises(ConfigError):
        load_config(path, environ={})
