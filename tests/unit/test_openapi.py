"""The served OpenAPI document is built from the router: it cannot list a route that is not served, nor
miss one that is; and the contract it is built from holds barkd's facts exactly, and none of barkd's prose."""

from dataclasses import fields
from pathlib import Path

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from exitd.api.app import create_app
from exitd.api.context import Services
from exitd.api.openapi import (
    CONTRACT_VERSIONS,
    DocumentDrift,
    build_document,
    contract,
    contract_facts,
    render_contract,
    served_routes,
)
from exitd.api.unsupported import barkd_operations, not_served
from exitd.config import Config
from tests.support.vectors import barkd_openapi

PACKAGED = Path(__file__).resolve().parents[2] / "exitd" / "api" / "contract"


def real_app() -> web.Application:
    """The daemon's app with every route module; no service is touched while routes are listed."""
    services = Services(**{f.name: None for f in fields(Services)} | {"config": Config()})
    return create_app(services, b"\0" * 32)


def test_every_served_route_has_exactly_one_operation() -> None:
    app = real_app()
    document = build_document(app, "0.1.4", metrics_open=False)
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in served_routes(app)}
    assert ("get", "/api/v1/bitcoin/tip") in documented and ("get", "/metrics") in documented


def test_a_route_without_an_operation_is_drift() -> None:
    app = real_app()

    async def handler(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_post("/api/v1/made-up", handler)
    with pytest.raises(DocumentDrift, match="routes without an OpenAPI operation: POST /api/v1/made-up;"):
        build_document(app, "0.1.4", metrics_open=False)


def test_an_exitd_operation_without_a_route_is_drift() -> None:
    with pytest.raises(DocumentDrift, match=r"without a route: GET /metrics, GET /api-docs/openapi\.json"):
        build_document(web.Application(), "0.1.4", metrics_open=False)


def test_every_barkd_operation_not_served_answers_501_and_documents_it() -> None:
    """One rule for both documents: 0.1.4's Ark-server operations and 0.6.0's additions alike."""
    app = real_app()
    routes = served_routes(app)
    unserved = {(r.method.upper(), r.path) for r in routes if r.handler is not_served}
    served = {(r.method.upper(), r.path) for r in routes if r.handler is not not_served}
    assert unserved == barkd_operations() - served and served & barkd_operations()
    assert {("POST", "/api/v1/boards/board-all"), ("GET", "/api/v1/history")} <= unserved
    assert {("POST", "/api/v1/message/sign"), ("GET", "/api/v1/wallet/mnemonic")} <= unserved
    paths = build_document(app, "0.1.4", metrics_open=False)["paths"]
    for method, path in unserved:
        operation = paths[path][method.lower()]
        assert list(operation["responses"]) == ["501", "401"] and "requestBody" not in operation


def test_every_served_write_documents_a_standbys_503_and_no_read_does() -> None:
    app = real_app()
    paths = build_document(app, "0.1.4", metrics_open=False)["paths"]
    for route in served_routes(app):
        responses = paths[route.path][route.method]["responses"]
        writes = route.method.upper() not in ("GET", "HEAD", "OPTIONS") and route.handler is not not_served
        assert ("503" in responses) == writes, (route.method, route.path)
    assert "leader" in paths["/api/v1/exits/progress"]["post"]["responses"]["503"]["description"]


def test_open_paths_are_marked_open() -> None:
    paths = build_document(real_app(), "0.1.4", metrics_open=False)["paths"]
    assert paths["/ping"]["get"]["security"] == [{}]
    assert paths["/swagger-ui"]["get"]["security"] == [{}]
    assert "security" not in paths["/metrics"]["get"]
    paths = build_document(real_app(), "0.1.4", metrics_open=True)["paths"]
    assert paths["/metrics"]["get"]["security"] == [{}]


def test_schemas_are_complete_and_valid_json_schema() -> None:
    for vocabulary in CONTRACT_VERSIONS:
        document = build_document(real_app(), vocabulary, metrics_open=False)
        text = str(document)
        for name, schema in document["components"]["schemas"].items():
            Draft202012Validator.check_schema(schema)
            assert f"#/components/schemas/{name}" in text, f"{name} is not used"
        for ref in set(text.split("'$ref': '#/components/schemas/")[1:]):
            assert ref.split("'")[0] in document["components"]["schemas"]


@pytest.mark.parametrize("version", CONTRACT_VERSIONS)
def test_packaged_contract_is_the_facts_of_barkds(version: str) -> None:
    expected = render_contract(barkd_openapi(version))
    assert (PACKAGED / f"barkd-openapi-{version}.json").read_text() == expected, (
        "run contrib/extract_contract.py"
    )


def test_contract_facts_drop_prose_only() -> None:
    document = {
        "info": {"title": "t", "description": "d", "contact": {"name": "n"}, "license": {}, "version": "1"},
        "tags": [{"name": "exits", "description": "d"}],
        "paths": {"/x": {"get": {"summary": "s", "operationId": "x", "deprecated": True}}},
        "components": {
            "schemas": {
                "Note": {
                    "title": "Note",
                    "type": "object",
                    "required": ["description"],
                    "properties": {"description": {"type": "string", "description": "d", "format": "f"}},
                }
            }
        },
    }
    assert contract_facts(document) == {
        "info": {"version": "1"},
        "tags": [{"name": "exits"}],
        "paths": {"/x": {"get": {"operationId": "x", "deprecated": True}}},
        "components": {
            "schemas": {
                "Note": {
                    "type": "object",
                    "required": ["description"],
                    "properties": {"description": {"type": "string", "format": "f"}},
                }
            }
        },
    }


@pytest.mark.parametrize("version", CONTRACT_VERSIONS)
def test_packaged_contract_carries_no_prose(version: str) -> None:
    assert contract_facts(contract(version)) == contract(version)


def test_import_documents_exitds_extra_fields_beside_barkds_schema() -> None:
    document = build_document(real_app(), "0.1.4", metrics_open=False)
    operation = document["paths"]["/api/v1/wallet/import-vtxo"]["post"]
    barkd, extras = operation["requestBody"]["content"]["application/json"]["schema"]["allOf"]
    assert barkd == {"$ref": "#/components/schemas/ImportVtxoRequest"}
    assert set(extras["properties"]) == {"protect", "anchor_blocks"}
    schema = {"allOf": [barkd, extras], "components": document["components"]}
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"vtxos": ["00"], "anchor_blocks": ["ab" * 32, 101], "protect": True})
    assert not validator.is_valid({"vtxos": ["00"], "anchor_blocks": ["not a hash"]})
    assert not validator.is_valid({"anchor_blocks": [101]})  # barkd's required `vtxos` still holds
