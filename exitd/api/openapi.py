"""exitd's own OpenAPI 3.1 document, generated from the routes the app really serves.

barkd's specification is the contract, so every route barkd defines gets barkd's operation (parameters,
request body, responses and their schemas), taken from the facts of barkd's documents that ship with exitd
(exitd/api/contract/: contract_facts of the reference documents, checked by a test; barkd's prose stays
with barkd). A route exitd answers with 501 documents the 501 it really gets. exitd's own routes
(/metrics, these docs) have their operations here. A route without an operation, or an operation here
without a route, raises DocumentDrift: the document is built from the router, so it cannot describe an API
that is not there.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from exitd import __version__
from exitd.api.shapes import VOCABULARIES, contract
from exitd.api.unsupported import not_served

# What a standby serves: reads. Every POST of barkd's API changes something (or runs a cycle, which may).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# barkd's versions, the contract first: an operation both define is taken from 0.1.4.
CONTRACT_VERSIONS = VOCABULARIES
SCHEMA_PREFIX = "#/components/schemas/"

# Human text in an OpenAPI document: barkd's words are barkd's, so the packaged contract keeps none of them.
PROSE_KEYWORDS = frozenset({"description", "summary", "title"})
INFO_PROSE = frozenset({"contact", "license"})

# exitd's own one-line summaries of the contract's operations it serves, by operationId.
SUMMARIES = {
    "tip": "Height of bitcoind's best block",
    "import_vtxo": "Import hex-encoded bark VTXOs",
    "vtxos": "List imported VTXOs",
    "get_vtxo": "One imported VTXO",
    "get_vtxo_encoded": "One imported VTXO, hex-encoded",
    "wallet_exists": "Whether the on-chain wallet exists",
    "create_wallet": "Create or restore the on-chain wallet",
    "balance": "Balance of the imported VTXOs",
    "exit_start_all": "Start the exit of every imported VTXO",
    "exit_start_vtxos": "Start the exits of the given VTXOs",
    "exit_progress": "Run a progress cycle now",
    "exit_claim_all": "Claim every claimable exit to an address",
    "exit_claim_vtxos": "Claim the given claimable exits to an address",
    "exit_cancel": "Cancel an exit before its last tx is broadcast",
    "emergency_exit_fee": "Estimated fees to exit VTXOs, and the wallet's funding plan",
    "get_all_exit_status": "Status of every exit",
    "get_live_exit_status": "Status of the exits still running",
    "get_finished_exits": "Status of the exits claimed or canceled",
    "get_exit_status_by_vtxo_id": "Status of one VTXO's exit",
    "onchain_address": "Next receive address of the on-chain wallet (it pays the CPFP fees)",
    "onchain_balance": "On-chain wallet balance",
    "onchain_sync": "Refresh the on-chain wallet from bitcoind",
    "sync": "Sync the wallet: refresh the on-chain wallet from bitcoind",
    "onchain_utxos": "On-chain wallet coins",
    "onchain_transactions": "On-chain wallet transactions",
    "onchain_send": "Send from the on-chain wallet",
    "onchain_send_many": "Send to several addresses from the on-chain wallet",
    "onchain_drain": "Send the whole on-chain wallet to an address",
    "onchain_fee_rates": "bitcoind's fee rate estimates",
    "send_onchain_fee": "Fee of an on-chain send",
    "ping": "Liveness check",
}

# Fields exitd reads in a request body beyond barkd's, by operationId: documented beside barkd's schema
# (allOf), which stays as barkd publishes it.
REQUEST_EXTRAS: dict[str, dict[str, Any]] = {
    "import_vtxo": {
        "protect": {
            "type": "boolean",
            "default": False,
            "description": "exitd's own: the guard may exit these VTXOs near expiry although no source "
            "(barkd) vouches they are still yours.",
        },
        "anchor_blocks": {
            "type": "array",
            "maxItems": 16,
            "items": {
                "oneOf": [
                    {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                    {"type": "integer", "minimum": 0},
                ]
            },
            "description": "exitd's own: blocks (hash or height) holding the txs of spent chain anchors. "
            "An unspent anchor is checked in the UTXO set; a spent one (its exit already begun, or "
            "swept) needs its tx, which a node without a tx index reads only from the block named here. "
            "On a pruned node the block must still be stored (else the 400 says how to fetch it back).",
        },
    },
}

MESSAGE_SCHEMA = {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}


class DocumentDrift(Exception):
    """The router and the documented operations disagree; the message lists every difference."""


@dataclass(frozen=True)
class Route:
    method: str  # lower case, as OpenAPI keys operations
    path: str
    handler: Any


def contract_facts(document: Any, parent: str = "") -> Any:
    """An OpenAPI document without its prose: paths, methods, parameters, schemas, enums, required lists,
    formats and status codes stay; every description, summary and title text, and the info's contact and
    license, go. Only text values are prose: a property that happens to be named `description` is a
    schema (an object) and stays."""
    if isinstance(document, dict):
        return {
            key: contract_facts(value, key)
            for key, value in document.items()
            if not (key in PROSE_KEYWORDS and isinstance(value, str))
            and not (parent == "info" and key in INFO_PROSE)
        }
    if isinstance(document, list):
        return [contract_facts(item, parent) for item in document]
    return document


def render_contract(document: Any) -> str:
    """The packaged file's text of a contract document (contrib/extract_contract.py writes it)."""
    return json.dumps(contract_facts(document), indent=2, ensure_ascii=False) + "\n"


NODE_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "chain", "height", "wallets", "pruned", "txindex", "problems"],
    "properties": {
        "version": {"type": "string"},
        "chain": {"type": "string"},
        "height": {"type": "integer"},
        "wallets": {"type": "string", "enum": ["enabled", "disabled"]},
        "pruned": {"type": "boolean"},
        "prune_height": {"type": ["integer", "null"]},
        "txindex": {"type": "string", "enum": ["none", "synced", "building"]},
        "initial_block_download": {"type": "boolean"},
        "blocks_read_to": {
            "type": ["object", "null"],
            "properties": {"height": {"type": "integer"}, "hash": {"type": "string"}},
        },
        "problems": {"type": "array", "items": {"type": "string"}},
    },
}


def _open() -> list[dict[str, Any]]:
    return [{}]


Operations = dict[tuple[str, str], dict[str, Any]]


def exitd_operations(metrics_open: bool) -> Operations:
    """Operations of the routes exitd adds to barkd's API."""
    return {
        **_service_operations(metrics_open),
        **_wallet_operations(),
        **_docs_operations(),
        **_node_operations(),
    }


def _service_operations(metrics_open: bool) -> Operations:
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        ("get", "/metrics"): {
            "tags": ["operations"],
            "summary": "Prometheus metrics",
            "description": "Exits by state, packages broadcast, fees paid, progress cycles, bitcoind RPC "
            "latency and failures, in the Prometheus text format 0.0.4. Needs the token unless "
            "`rest.metrics_open` is set.",
            "operationId": "metrics",
            "responses": {"200": {"description": "The metrics", **text}},
            **({"security": _open()} if metrics_open else {}),
        },
        ("get", "/api-docs/openapi.json"): {
            "tags": ["operations"],
            "summary": "This OpenAPI document",
            "operationId": "openapi",
            "responses": {
                "200": {
                    "description": "The document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
            "security": _open(),
        },
    }


def _wallet_operations() -> Operations:
    return {
        ("post", "/api/v1/wallet/vtxos/{id}/gone"): {
            "tags": ["wallet"],
            "summary": "Mark a VTXO gone",
            "description": "The user says the VTXO is no longer theirs (spent, refreshed or forfeited in "
            "the wallet): its state becomes spent and nothing, neither the guard nor a start, exits it. "
            "Refused while the VTXO is exiting (cancel the exit first).",
            "operationId": "mark_vtxo_gone",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {
                    "description": "The VTXO as it is now",
                    "content": {"application/json": {"schema": {"$ref": f"{SCHEMA_PREFIX}WalletVtxoInfo"}}},
                },
                "404": {
                    "description": "No such VTXO",
                    "content": {"application/json": {"schema": {"$ref": f"{SCHEMA_PREFIX}NotFoundError"}}},
                },
            },
        },
        ("get", "/api/v1/wallet/source"): {
            "tags": ["wallet"],
            "summary": "Where VTXOs come from, and the last sync",
            "description": "kind `barkd` (exitd follows a barkd: its url, the unix time of the last "
            "successful sync and of the last attempt, the error of a failed one, the VTXOs it listed, "
            "whether it serves notifications) or `import` (VTXOs come by import only).",
            "operationId": "vtxo_source",
            "responses": {
                "200": {
                    "description": "The source",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        },
    }


def _docs_operations() -> Operations:
    return {
        ("get", "/swagger-ui"): _docs_file(
            "swagger_ui",
            "Swagger UI for this document",
            "A page showing this document with Swagger UI, all of it served by exitd (no third-party "
            "script, a content security policy).",
            "text/html",
        ),
        ("get", "/swagger-ui/start.js"): _docs_file(
            "swagger_ui_start", "The script that starts Swagger UI on this document", "", "text/javascript"
        ),
        ("get", "/swagger-ui/swagger-ui-bundle.js"): _docs_file(
            "swagger_ui_bundle", "Swagger UI's script (from the swagger-ui-py package)", "", "text/javascript"
        ),
        ("get", "/swagger-ui/swagger-ui.css"): _docs_file(
            "swagger_ui_css", "Swagger UI's stylesheet (from the swagger-ui-py package)", "", "text/css"
        ),
    }


def _node_operations() -> Operations:
    return {
        ("get", "/api/v1/bitcoin/node"): {
            "tags": ["bitcoin"],
            "summary": "The node as exitd needs it",
            "description": "What exitd needs of bitcoind and found (version >= 29, chain, wallets enabled; "
            "pruning and a tx index are reported, neither is needed), the block exitd has read the chain "
            "up to, and every problem that keeps exits from progressing (empty when there is none).",
            "operationId": "bitcoin_node",
            "responses": {
                "200": {
                    "description": "The node's status",
                    "content": {"application/json": {"schema": NODE_STATUS_SCHEMA}},
                }
            },
        },
    }


def _docs_file(operation_id: str, summary: str, description: str, media_type: str) -> dict[str, Any]:
    """An open operation of the docs page, answering a file of `media_type`."""
    return {
        "tags": ["operations"],
        "summary": summary,
        **({"description": description} if description else {}),
        "operationId": operation_id,
        "responses": {
            "200": {"description": summary, "content": {media_type: {"schema": {"type": "string"}}}}
        },
        "security": _open(),
    }


def served_routes(app: web.Application) -> list[Route]:
    """Every (method, path) the router answers, but the HEAD twins aiohttp adds to GET routes."""
    routes = []
    for resource in app.router.resources():
        path = resource.canonical
        for route in resource:
            if route.method != "HEAD":
                routes.append(Route(route.method.lower(), path, route.handler))
    return routes


def contract_operation(method: str, path: str) -> dict[str, Any] | None:
    for version in CONTRACT_VERSIONS:
        operation = contract(version)["paths"].get(path, {}).get(method)
        if operation is not None:
            return dict(copy.deepcopy(operation))
    return None


def not_served_operation(operation: dict[str, Any]) -> dict[str, Any]:
    """barkd's operation for a route exitd does not serve, with exitd's real answer."""
    operation.pop("requestBody", None)
    operation["summary"] = f"Not served by exitd, answers 501 ({operation['operationId'].replace('_', ' ')})"
    operation["responses"] = {
        "501": {
            "description": "exitd only performs unilateral exits; this is barkd's (use barkd)",
            "content": {"application/json": {"schema": {"$ref": f"{SCHEMA_PREFIX}NotImplementedError"}}},
        }
    }
    return operation


def with_request_extras(operation: dict[str, Any]) -> dict[str, Any]:
    """barkd's request body schema, and beside it the fields exitd also reads (REQUEST_EXTRAS)."""
    extras = REQUEST_EXTRAS.get(operation.get("operationId", ""))
    if extras is not None:
        media = operation["requestBody"]["content"]["application/json"]
        media["schema"] = {"allOf": [media["schema"], {"type": "object", "properties": extras}]}
    return operation


def _message_response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"{SCHEMA_PREFIX}{schema}"}}},
    }


def with_exitd_answers(operation: dict[str, Any], served: bool, writes: bool = False) -> dict[str, Any]:
    """An operation plus the answers exitd really gives that barkd leaves out: 400 when a served operation's
    input fails exitd's checks (barkd lists it on some operations with input, not all), 401 without a valid
    token, 413 for a body over `rest.max_body_bytes`, 408 for one not sent within `rest.body_timeout`, 503
    for a served write sent to a standby (several exitd on one PostgreSQL database).
    Every answer gets the description OpenAPI requires: its HTTP status phrase, where the contract
    (prose-free) has none."""
    responses = operation["responses"]
    if served and writes:
        standby = "A standby takes no writes: the message names the leader (host:pid, term, REST URL)"
        responses.setdefault("503", _message_response(standby, "ErrorMessage"))
    if served and (operation.get("parameters") or "requestBody" in operation):
        responses.setdefault("400", _message_response("Invalid input", "BadRequestError"))
    if operation.get("security") != _open():
        responses.setdefault("401", _message_response("Missing or invalid auth token", "ErrorMessage"))
    if "requestBody" in operation:
        responses.setdefault("413", _message_response("Body over rest.max_body_bytes", "ErrorMessage"))
        late = _message_response("Body not sent within rest.body_timeout", "ErrorMessage")
        responses.setdefault("408", late)
    for status, response in responses.items():
        response.setdefault("description", HTTPStatus(int(status)).phrase)
    return operation


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(SCHEMA_PREFIX):
                yield value.removeprefix(SCHEMA_PREFIX)
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def component_schemas(paths: dict[str, Any], vocabulary: str) -> dict[str, Any]:
    """The schemas the operations reach, each from the document of the configured exit-state vocabulary
    when it defines it (its exit sub-state names are what exitd answers with), else from the other."""
    order = [vocabulary, *(v for v in CONTRACT_VERSIONS if v != vocabulary)]
    available: dict[str, Any] = {"NotImplementedError": MESSAGE_SCHEMA, "ErrorMessage": MESSAGE_SCHEMA}
    for version in reversed(order):
        available.update(contract(version)["components"]["schemas"])
    schemas: dict[str, Any] = {}
    pending = list(_references(paths))
    while pending:
        name = pending.pop()
        if name not in schemas:
            schemas[name] = copy.deepcopy(available[name])
            pending += _references(schemas[name])
    return dict(sorted(schemas.items()))


def build_document(app: web.Application, vocabulary: str, metrics_open: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of what `app` serves; DocumentDrift when a route or operation is unmatched."""
    own = exitd_operations(metrics_open)
    paths: dict[str, dict[str, Any]] = {}
    undocumented: list[str] = []
    for route in served_routes(app):
        operation = own.get((route.method, route.path)) or contract_operation(route.method, route.path)
        if operation is None:
            undocumented.append(f"{route.method.upper()} {route.path}")
            continue
        if route.handler is not_served:
            operation = not_served_operation(operation)
        elif operation.get("operationId") in SUMMARIES:
            operation["summary"] = SUMMARIES[operation["operationId"]]
        served = route.handler is not not_served
        if served:
            operation = with_request_extras(operation)
        operation = with_exitd_answers(operation, served, writes=route.method.upper() not in READ_METHODS)
        paths.setdefault(route.path, {})[route.method] = operation
    unrouted = [f"{m.upper()} {p}" for m, p in own if m not in paths.get(p, {})]
    if undocumented or unrouted:
        raise DocumentDrift(
            "routes without an OpenAPI operation: "
            + (", ".join(undocumented) or "none")
            + "; exitd operations without a route: "
            + (", ".join(unrouted) or "none")
        )
    barkd = contract(CONTRACT_VERSIONS[0])
    used_tags = {tag for ops in paths.values() for op in ops.values() for tag in op.get("tags", ())}
    tags = [t for t in barkd["tags"] if t["name"] in used_tags]
    tags.append({"name": "operations", "description": "Running exitd: metrics and these docs."})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "exitd REST API",
            "description": "Unilateral exits of bark VTXOs. exitd serves barkd's REST API (the contract is "
            f"barkd {CONTRACT_VERSIONS[0]}, with {CONTRACT_VERSIONS[1]}'s exit endpoints) for everything "
            "exit-related; operations that need an Ark server answer 501. Exit sub-states use barkd "
            f"{vocabulary}'s names.",
            "license": {"name": "MIT", "identifier": "MIT"},
            "version": __version__,
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": component_schemas(paths, vocabulary),
            "securitySchemes": copy.deepcopy(barkd["components"]["securitySchemes"]),
        },
        "security": [{"bearer": []}],
        "tags": tags,
    }
