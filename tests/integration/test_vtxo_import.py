"""Importing bark's own VTXO vectors over REST and reading them back."""

import pytest

from exitd.ark.vtxo import decode_vtxo
from tests.support.daemon import DaemonProcess
from tests.support.vectors import V1_VECTORS, V2_VECTORS

pytestmark = pytest.mark.bitcoind


def test_import_v2_vectors_lists_their_fields(daemon: DaemonProcess) -> None:
    status, imported = daemon.request(
        "POST", "/api/v1/wallet/import-vtxo", {"vtxos": [v.data.hex() for v in V2_VECTORS]}
    )
    assert status == 200, imported
    assert len(imported) == len(V2_VECTORS)
    for info, vec in zip(imported, V2_VECTORS, strict=True):
        derived = vec.derived
        vtxo = decode_vtxo(vec.data)
        assert info["id"] == derived["vtxo_id"] == str(vtxo.id)
        assert info["amount_sat"] == vtxo.amount
        assert info["exit_depth"] == vec.exit_depth
        assert info["expiry_height"] == 101010 and info["exit_delta"] == 2016
        assert info["policy_type"] == vtxo.policy.kind
        assert info["chain_anchor"] == str(vtxo.anchor_point)
        assert info["state"] == {"type": "spendable"}
        assert info["key_held"] is False  # the vectors' keys are not this wallet's
    status, listed = daemon.request("GET", "/api/v1/wallet/vtxos")
    assert status == 200 and {i["id"] for i in listed} == {i["id"] for i in imported}
    one = imported[0]
    assert daemon.request("GET", f"/api/v1/wallet/vtxos/{one['id']}") == (200, one)
    status, body = daemon.request("GET", f"/api/v1/wallet/vtxos/{one['id']}/encoded")
    assert status == 200 and body == {"encoded": V2_VECTORS[0].data.hex()}


def test_reimport_is_idempotent(daemon: DaemonProcess) -> None:
    body = {"vtxos": [V2_VECTORS[0].data.hex()]}
    first = daemon.request("POST", "/api/v1/wallet/import-vtxo", body)
    second = daemon.request("POST", "/api/v1/wallet/import-vtxo", body)
    assert first == second and first[0] == 200
    assert len(daemon.request("GET", "/api/v1/wallet/vtxos")[1]) == 1


def test_v1_vectors_come_back_as_v2(daemon: DaemonProcess) -> None:
    status, imported = daemon.request(
        "POST", "/api/v1/wallet/import-vtxo", {"vtxos": [v.data.hex() for v in V1_VECTORS]}
    )
    assert status == 200, imported
    for info, vec in zip(imported, V1_VECTORS, strict=True):
        encoded = daemon.request("GET", f"/api/v1/wallet/vtxos/{info['id']}/encoded")[1]["encoded"]
        assert encoded[:4] == "0200" and encoded != vec.data.hex()
        assert decode_vtxo(bytes.fromhex(encoded)) == decode_vtxo(vec.data)


def test_one_bad_entry_rejects_the_batch(daemon: DaemonProcess) -> None:
    good = V2_VECTORS[0].data.hex()
    truncated = V2_VECTORS[1].data[:-5].hex()
    for bad, why in [("zz", "not valid hex"), (truncated, "vtxos[1]: at byte"), (7, "hex string")]:
        status, body = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [good, bad]})
        assert status == 400 and why in body["message"], body
    assert daemon.request("GET", "/api/v1/wallet/vtxos") == (200, [])


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"vtxos": "00"}', "list"),
        (b'{"vtxos": []}', "no VTXOs"),
    ],
)
def test_malformed_bodies(daemon: DaemonProcess, raw: bytes, why: str) -> None:
    status, body = daemon.request("POST", "/api/v1/wallet/import-vtxo", raw=raw)
    assert status == 400 and why in body["message"]


def test_oversize_body_is_413(daemon: DaemonProcess) -> None:
    status, body = daemon.request(
        "POST", "/api/v1/wallet/import-vtxo", raw=b'{"vtxos": ["' + b"00" * (1 << 20) + b'"]}'
    )
    assert status == 413 and "too large" in body["message"]


@pytest.mark.parametrize(
    ("vtxo_id", "status"),
    [("nothex:0", 400), ("00" * 32, 400), ("00" * 32 + ":x", 400), ("00" * 32 + ":0", 404)],
)
def test_bad_and_unknown_ids(daemon: DaemonProcess, vtxo_id: str, status: int) -> None:
    got, body = daemon.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")
    assert got == status
    if status == 404:
        assert body["resources"] == [vtxo_id] and "not found" in body["message"]


def test_bad_query_flag(daemon: DaemonProcess) -> None:
    status, body = daemon.request("GET", "/api/v1/wallet/vtxos?all=maybe")
    assert status == 400 and "'all'" in body["message"]
