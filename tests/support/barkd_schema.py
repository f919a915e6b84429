"""barkd's own OpenAPI component schemas as a strict JSON Schema 2020-12 validator: the judge of our JSON."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.support.vectors import barkd_openapi

VERSIONS = ("0.1.4", "0.6.0")


@cache
def _document(version: str) -> dict[str, Any]:
    return dict(barkd_openapi(version))


def validator(component: str, version: str = "0.1.4") -> Draft202012Validator:
    return _pointer_validator(f"/components/schemas/{component}", version)


@cache
def vocabulary_document(version: str) -> dict[str, Any]:
    """barkd's document of `version`, completed with the operations and schemas only the other version has:
    what a client of exitd in that vocabulary reads (exitd serves 0.6.0's exit endpoints in 0.1.4's names
    too, as its own served document says). Where both define a schema, `version`'s stands."""
    document = copy.deepcopy(_document(version))
    other = _document(next(v for v in VERSIONS if v != version))
    for path, operations in other["paths"].items():
        document["paths"].setdefault(path, operations)
    for name, schema in other["components"]["schemas"].items():
        document["components"]["schemas"].setdefault(name, schema)
    return document


def _pointer_validator(
    pointer: str, version: str, document: dict[str, Any] | None = None
) -> Draft202012Validator:
    """A validator of the schema at JSON `pointer` in barkd's document (or `document`), its $refs resolved
    there."""
    document = document or _document(version)
    registry = Registry().with_resource(
        "barkd", Resource.from_contents(document, default_specification=_spec())
    )
    return Draft202012Validator({"$ref": f"barkd#{quote(pointer, safe='/~')}"}, registry=registry)


def _spec() -> Any:
    from referencing.jsonschema import DRAFT202012

    return DRAFT202012


def assert_valid(instance: Any, component: str, version: str = "0.1.4") -> None:
    errors = sorted(validator(component, version).iter_errors(instance), key=str)
    assert not errors, f"{component}: " + "; ".join(e.message for e in errors[:5])


def assert_answer(
    method: str, template: str, status: int, body: Any, version: str = "0.1.4", whole: bool = False
) -> None:
    """What barkd's document promises for the operation: `status` is one it documents, and `body` is valid
    against that response's schema (or empty, where the response has no content). `whole`: judged by
    vocabulary_document(version), for operations the version itself lacks."""
    document = vocabulary_document(version) if whole else _document(version)
    responses = document["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template}: {status} is not documented by barkd {version}"
    content = responses[str(status)].get("content", {})
    if "application/json" not in content:
        assert body == "", f"{method} {template} {status}: barkd documents no body, got {body!r}"
        return
    escaped = template.replace("~", "~0").replace("/", "~1")
    pointer = f"/paths/{escaped}/{method.lower()}/responses/{status}/content/application~1json/schema"
    errors = sorted(_pointer_validator(pointer, version, document).iter_errors(body), key=str)
    assert not errors, f"{method} {template} {status}: " + "; ".join(e.message for e in errors[:5])
