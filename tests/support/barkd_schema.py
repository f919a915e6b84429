"""barkd's own OpenAPI component schemas as a strict JSON Schema 2020-12 validator: the judge of our JSON."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


@cache
def _document(version: str) -> dict[str, Any]:
    path = REFERENCE / f"barkd-openapi-{version}.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    return json.loads(path.read_text())


def validator(component: str, version: str = "0.1.4") -> Draft202012Validator:
    document = _document(version)
    registry = Registry().with_resource(
        "barkd", Resource.from_contents(document, default_specification=_spec())
    )
    schema = {"$ref": f"barkd#/components/schemas/{component}"}
    return Draft202012Validator(schema, registry=registry)


def _spec() -> Any:
    from referencing.jsonschema import DRAFT202012

    return DRAFT202012


def assert_valid(instance: Any, component: str, version: str = "0.1.4") -> None:
    errors = sorted(validator(component, version).iter_errors(instance), key=str)
    assert not errors, f"{component}: " + "; ".join(e.message for e in errors[:5])
