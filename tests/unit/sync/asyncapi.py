"""Validate payloads against the schemas of docs/asyncapi.yaml (draft 7, as AsyncAPI 3 uses)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DOC = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.yaml"


@functools.cache
def asyncapi() -> dict[str, Any]:
    return dict(yaml.safe_load(DOC.read_text(encoding="utf-8")))


def validator(schema: str) -> jsonschema.Draft7Validator:
    doc = asyncapi()
    root = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
    return jsonschema.Draft7Validator(root, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def validate_message(payload: bytes, schema: str | None = None) -> None:
    """Raise jsonschema.ValidationError unless `payload` is an Event or a Batch (or `schema`)."""
    body = json.loads(payload)
    name = schema or ("Batch" if isinstance(body, list) else "Envelope")
    validator(name).validate(body)
