"""LINE's published Messaging API OpenAPI document as JSON Schema validators (jsonschema 2020-12).

The document (tests/contracts/line/messaging-api.yml, see SOURCE.md there) is OpenAPI 3.0, whose
schemas are JSON Schema with two additions the validator does not know, handled here:

- `discriminator`: a base schema (Message, FlexComponent, Action...) names its subtypes by
  `type`, each subtype being `allOf: [base, extension]`. The base becomes a dispatch (the
  subtype its `type` names; a `type` the mapping lacks fails) and each subtype one flattened
  object schema.
- `nullable: true` becomes a `"null"` alternative of the type.

Every object schema with declared properties is closed (`additionalProperties: false`, unless
the document says otherwise): a property the document does not declare (a typo, a renamed
field) fails the test.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["DOCUMENT_PATH", "ContractError", "check_exchange", "operation", "validator"]

DOCUMENT_PATH = Path(__file__).with_name("line") / "messaging-api.yml"
_URI = "urn:line-openapi:messaging-api"
_SCHEMAS = "#/components/schemas/"


class ContractError(AssertionError):
    """A request or response that LINE's document does not allow."""


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` -> a `"null"` alternative of the type, everywhere."""
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items()}
        if out.get("nullable") is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    return node


def _flatten(
    name: str, schema: dict[str, Any], schemas: dict[str, Any], value: str, prop: str
) -> dict[str, Any]:
    """A subtype (`allOf: [base, extension]`) as one closed object schema."""
    properties: dict[str, Any] = {}
    required: set[str] = set(schema.get("required", []))
    for part in [*schema.get("allOf", []), schema]:
        ref = part.get("$ref", "")
        source = schemas[ref.removeprefix(_SCHEMAS)] if ref else part
        properties.update(source.get("properties", {}))
        required.update(source.get("required", []))
    properties[prop] = {"const": value}
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(required),
        "additionalProperties": False,
        "description": f"{name} (flattened for validation)",
    }


@functools.cache
def _document() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))
    schemas: dict[str, Any] = raw["components"]["schemas"]
    bases = {
        name: schema["discriminator"]
        for name, schema in schemas.items()
        if "mapping" in schema.get("discriminator", {})
    }
    rewritten: dict[str, Any] = {}
    for base, discriminator in bases.items():
        prop, mapping = discriminator["propertyName"], discriminator["mapping"]
        for value, target in mapping.items():
            sub = target.removeprefix(_SCHEMAS)
            assert sub not in bases, f"{sub} is both a subtype and a base"
            rewritten[sub] = _flatten(sub, schemas[sub], schemas, value, prop)
        rewritten[base] = {
            "type": "object",
            "required": [prop],
            "properties": {prop: {"enum": sorted(mapping)}},
            "allOf": [
                {"if": {"properties": {prop: {"const": value}}}, "then": {"$ref": target}}
                for value, target in sorted(mapping.items())
            ],
        }
    for name, schema in schemas.items():
        if name in rewritten:
            continue
        closed = dict(schema)
        if closed.get("type") == "object" and "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        rewritten[name] = closed
    document = copy.deepcopy(raw)
    document["components"]["schemas"] = _nullable(rewritten)
    return document


@functools.cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(_document(), default_specification=DRAFT202012)
    return Registry().with_resource(_URI, resource)


def validator(schema_ref: str) -> Draft202012Validator:
    """A validator for `#/components/schemas/...` (or any pointer into the document)."""
    schema: dict[str, Any] = {"$ref": _URI + schema_ref}
    return Draft202012Validator(schema, registry=_registry(), format_checker=FormatChecker())


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The document's path template and operation for a concrete request path."""
    paths: dict[str, Any] = _document()["paths"]
    for template, item in paths.items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise ContractError(f"{method} {path} is not an operation of LINE's Messaging API")


def _pointer(template: str, method: str, *tail: str) -> str:
    escaped = template.replace("~", "~0").replace("/", "~1")
    return "#/paths/" + "/".join([escaped, method.lower(), *tail])


def _fail(what: str, errors: list[ValidationError]) -> ContractError:
    lines = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in errors[:10]]
    return ContractError(f"{what} breaks LINE's OpenAPI document:\n  " + "\n  ".join(lines))


def check_exchange(
    method: str,
    path: str,
    headers: dict[str, str],
    request_body: Any,
    status: int,
    response_body: Any,
) -> None:
    """Raise ContractError unless the request and its response both follow the document."""
    template, op = operation(method, path)
    where = f"{method} {path}"
    declared = {p["name"].lower(): p for p in op.get("parameters", []) if p.get("in") == "header"}
    for name in ("x-line-retry-key",):
        value = next((v for k, v in headers.items() if k.lower() == name), None)
        if value is None:
            continue
        if name not in declared:
            raise ContractError(f"{where}: header {name} is not accepted by this operation")
        errors = list(
            Draft202012Validator(declared[name]["schema"], format_checker=FormatChecker()).iter_errors(value)
        )
        if errors:
            raise _fail(f"{where} header {name}", errors)
    body_spec = op.get("requestBody")
    if body_spec is None:
        if request_body is not None:
            raise ContractError(f"{where}: this operation takes no body")
    else:
        ref = _pointer(template, method, "requestBody", "content", "application~1json", "schema")
        errors = list(validator(ref).iter_errors(request_body))
        if errors:
            raise _fail(f"{where} request", errors)
    responses: dict[str, Any] = op.get("responses", {})
    if str(status) not in responses:
        raise ContractError(f"{where}: status {status} is not one LINE documents ({', '.join(responses)})")
    content = responses[str(status)].get("content", {}).get("application/json")
    if content is None:
        return
    ref = _pointer(template, method, "responses", str(status), "content", "application~1json", "schema")
    errors = list(validator(ref).iter_errors(response_body))
    if errors:
        raise _fail(f"{where} response {status}", errors)
