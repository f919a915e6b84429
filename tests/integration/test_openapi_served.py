"""Real answers of the running daemon, validated (JSON Schema 2020-12) against the document it serves."""

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.support.daemon import DaemonProcess
from tests.support.vectors import V2_VECTORS

pytestmark = pytest.mark.bitcoind


def check_answer(document: dict[str, Any], method: str, template: str, status: int, answer: Any) -> None:
    """`answer` is documented for (method, template, status) and valid against its schema."""
    responses = document["paths"][template][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {template}: {status} is not documented"
    content = responses[str(status)].get("content", {})
    if "application/json" in content:
        schema = {**content["application/json"]["schema"], "components": document["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(answer), key=str)
        assert not errors, f"{method.upper()} {template} {status}: " + "; ".join(
            e.message for e in errors[:3]
        )
    else:
        assert isinstance(answer, str)


def test_real_answers_match_the_served_document(daemon: DaemonProcess) -> None:
    status, document = daemon.request("GET", "/api-docs/openapi.json", auth=False)
    assert status == 200 and document["openapi"] == "3.1.0"
    status, page = daemon.request("GET", "/swagger-ui", auth=False)
    assert status == 200 and "/api-docs/openapi.json" in page

    vtxo = str(V2_VECTORS[0].derived["vtxo_id"])
    cases: list[tuple[str, str, str, Any]] = [
        ("get", "/ping", "/ping", None),
        ("get", "/api/v1/bitcoin/tip", "/api/v1/bitcoin/tip", None),
        ("get", "/api/v1/fees/onchain", "/api/v1/fees/onchain", None),
        (
            "post",
            "/api/v1/wallet/import-vtxo",
            "/api/v1/wallet/import-vtxo",
            {"vtxos": [V2_VECTORS[0].data.hex()]},
        ),
        ("post", "/api/v1/wallet/import-vtxo", "/api/v1/wallet/import-vtxo", {"vtxos": ["zz"]}),
        ("get", "/api/v1/wallet/vtxos", "/api/v1/wallet/vtxos", None),
        ("get", f"/api/v1/wallet/vtxos/{vtxo}", "/api/v1/wallet/vtxos/{id}", None),
        ("get", f"/api/v1/exits/status/{vtxo}", "/api/v1/exits/status/{vtxo_id}", None),
        ("post", "/api/v1/exits/start/vtxos", "/api/v1/exits/start/vtxos", {"vtxos": [vtxo]}),
        ("get", "/api/v1/exits/status", "/api/v1/exits/status", None),
        ("get", "/api/v1/exits/status?history=true&transactions=true", "/api/v1/exits/status", None),
        ("get", f"/api/v1/exits/status/{vtxo}", "/api/v1/exits/status/{vtxo_id}", None),
        ("post", "/api/v1/exits/progress", "/api/v1/exits/progress", {}),
        ("post", "/api/v1/boards/board-all", "/api/v1/boards/board-all", None),
        ("get", "/metrics", "/metrics", None),
        ("post", "/api/v1/onchain/addresses/next", "/api/v1/onchain/addresses/next", None),
        ("get", "/api/v1/onchain/balance", "/api/v1/onchain/balance", None),
    ]
    seen_statuses = []
    for method, path, template, body in cases:
        status, answer = daemon.request(method.upper(), path, body)
        check_answer(document, method, template, status, answer)
        seen_statuses.append(status)
    assert {200, 400, 404, 501} <= set(seen_statuses)
