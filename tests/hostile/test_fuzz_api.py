"""schemathesis against the live daemon: first over the document it serves (valid and invalid input), then
with barkd's own document as the judge of what a barkd client sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from jsonschema import Draft202012Validator
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from exitd.api.openapi import MESSAGE_SCHEMA
from tests.support.daemon import DaemonProcess
from tests.support.fuzz import fuzz_operation, live_config, operations
from tests.support.vectors import barkd_openapi

pytestmark = pytest.mark.bitcoind

# Enough to reach each operation's validation branches; the two runs stay well under a minute each.
MAX_EXAMPLES = 15
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


def answers_501(operation: Any) -> bool:
    """An operation exitd does not serve: exitd's document gives it exactly one answer, 501."""
    return "501" in operation.definition.raw["responses"]


def test_served_document_holds_for_generated_input(daemon: DaemonProcess) -> None:
    """No 5xx on any input, valid or not, and every answer documented and valid against the served document
    (the Ark-server operations answer their documented 501)."""
    schema = schemathesis.openapi.from_url(
        f"http://127.0.0.1:{daemon.port}/api-docs/openapi.json", config=live_config(daemon)
    )
    failures = []
    for operation in operations(schema):
        checks = CONFORMANCE if answers_501(operation) else [not_a_server_error, *CONFORMANCE]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.append(fuzz_operation(operation, mode, checks, MAX_EXAMPLES))
    assert daemon.process is not None and daemon.process.poll() is None
    assert [f for f in failures if f] == []


def barkd_document() -> dict[str, Any]:
    return dict(barkd_openapi("0.1.4"))


def barkd_060_statuses(method: str, path: str) -> set[str]:
    document = barkd_openapi("0.6.0")
    return set(document["paths"].get(path, {}).get(method, {}).get("responses", {}))


def not_served(daemon: DaemonProcess) -> frozenset[str]:
    """The labels of barkd's operations exitd does not serve: those its own document answers with 501."""
    status, document = daemon.request("GET", "/api-docs/openapi.json", auth=False)
    assert status == 200
    return frozenset(
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "501" in operation["responses"]
    )


def documented_or_exitd_extra(unserved: frozenset[str]) -> Callable[[CheckContext, Response, Case], bool]:
    """The status barkd documents for the operation (0.1.4, or 0.6.0 which documents more), or one of
    exitd's precise additions: 400 where exitd checks an input barkd's schema lets through, 501 where exitd
    does not serve the operation. Any body but a documented one is barkd's error shape, {message}."""

    def check(ctx: CheckContext, response: Response, case: Case) -> bool:
        operation = case.operation
        status = str(response.status_code)
        documented = set(operation.definition.raw["responses"]) | barkd_060_statuses(
            operation.method.lower(), operation.path
        )
        raw = operation.definition.raw
        has_input = bool(raw.get("parameters")) or "requestBody" in raw
        extra = {"501"} if operation.label in unserved else ({"400"} if has_input else set())
        assert status in documented | extra, f"{operation.label}: {status} is neither barkd's nor exitd's"
        if status not in documented:
            errors = list(Draft202012Validator(MESSAGE_SCHEMA).iter_errors(response.json()))
            assert not errors, f"{operation.label} {status}: {errors[0].message}"
        return True

    return check


def test_barkd_document_judges_the_daemon(daemon: DaemonProcess) -> None:
    """What a barkd client sends (input valid by barkd's 0.1.4 document) gets what barkd's document promises:
    no 5xx but the 501 of operations exitd does not serve, documented statuses, bodies valid by barkd's
    schemas."""
    schema = schemathesis.openapi.from_dict(barkd_document(), config=live_config(daemon))
    unserved = not_served(daemon)
    assert "POST /api/v1/boards/board-all" in unserved
    failures = []
    for operation in operations(schema):
        checks = [
            *([] if operation.label in unserved else [not_a_server_error]),
            documented_or_exitd_extra(unserved),
            content_type_conformance,
            response_schema_conformance,
        ]
        failures.append(fuzz_operation(operation, GenerationMode.POSITIVE, checks, MAX_EXAMPLES))
    assert daemon.process is not None and daemon.process.poll() is None
    assert [f for f in failures if f] == []
