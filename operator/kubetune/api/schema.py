"""A tiny builder for structural OpenAPI v3 schemas, the kind CustomResourceDefinitions need.

The CRDs in ``crds/`` are generated from ``kubetune.api.crds`` with these helpers, so that
every field carries a description (``kubectl explain`` teaches the API), defaults and
bounds sit next to the field they constrain, and CEL rules name the field they are about.
Pure data in, pure data out: nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Schema = dict[str, Any]

# s3://bucket[/prefix] with an S3-valid bucket name, or pvc://claim[/path] with a DNS-1123 claim.
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
DATA_URI = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?)(/.*)?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DECIMAL = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY = rf"^(\+|-)?{_DECIMAL}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_DECIMAL}))?$"


def _with(schema: Schema, **extra: Any) -> Schema:
    schema.update({k: v for k, v in extra.items() if v is not None})
    return schema


def string(
    description: str,
    *,
    enum: Sequence[str] | None = None,
    pattern: str | None = None,
    default: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
) -> Schema:
    return _with(
        {"type": "string", "description": description},
        enum=list(enum) if enum is not None else None,
        pattern=pattern,
        default=default,
        minLength=min_length,
        maxLength=max_length,
    )


def integer(
    description: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
    enum: Sequence[int] | None = None,
) -> Schema:
    return _with(
        {"type": "integer", "description": description},
        minimum=minimum,
        maximum=maximum,
        default=default,
        enum=list(enum) if enum is not None else None,
    )


def number(
    description: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool | None = None,
    default: float | None = None,
) -> Schema:
    return _with(
        {"type": "number", "description": description},
        minimum=minimum,
        maximum=maximum,
        exclusiveMinimum=exclusive_minimum,
        default=default,
    )


def boolean(description: str, *, default: bool | None = None) -> Schema:
    return _with({"type": "boolean", "description": description}, default=default)


def quantity(description: str, *, default: str | None = None) -> Schema:
    """A Kubernetes resource quantity ("8", "500m", "64Gi"), as int or string."""
    return _with(
        {
            "description": description,
            "x-kubernetes-int-or-string": True,
            # The one anyOf form structural schemas allow; the pattern applies to strings.
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY,
        },
        default=default,
    )


def array(
    description: str,
    items: Schema,
    *,
    max_items: int | None = None,
    min_items: int | None = None,
    default: list[Any] | None = None,
    list_type: str | None = None,
    list_map_keys: Sequence[str] | None = None,
) -> Schema:
    return _with(
        {"type": "array", "description": description, "items": items},
        maxItems=max_items,
        minItems=min_items,
        default=default,
        **{
            "x-kubernetes-list-type": list_type,
            "x-kubernetes-list-map-keys": list(list_map_keys) if list_map_keys else None,
        },
    )


def string_map(description: str, *, max_properties: int | None = None) -> Schema:
    return _with(
        {
            "type": "object",
            "description": description,
            "additionalProperties": {"type": "string"},
        },
        maxProperties=max_properties,
    )


def map_of(description: str, values: Schema, *, max_properties: int | None = None) -> Schema:
    return _with(
        {"type": "object", "description": description, "additionalProperties": values},
        maxProperties=max_properties,
    )


def free_form(description: str) -> Schema:
    """An object whose content Kubernetes does not validate (e.g. a pod affinity)."""
    return {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }


def rule(
    expression: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> Schema:
    """A CEL validation rule. ``field_path`` makes the API error name the offending field."""
    return _with({"rule": expression, "message": message}, fieldPath=field_path, reason=reason)


def obj(
    description: str,
    properties: Mapping[str, Schema],
    *,
    required: Sequence[str] = (),
    rules: Sequence[Schema] = (),
    default: dict[str, Any] | None = None,
) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "properties": dict(properties),
    }
    if required:
        schema["required"] = list(required)
    if rules:
        schema["x-kubernetes-validations"] = list(rules)
    if default is not None:
        schema["default"] = default
    return schema


def undocumented_fields(schema: Schema, path: str = "") -> list[str]:
    """Every property path below ``schema`` that lacks a description (for tests and generators)."""
    missing: list[str] = []
    for name, sub in schema.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        if here == "metadata":
            continue  # the API server documents (and forbids us to describe) object metadata
        if not sub.get("description"):
            missing.append(here)
        missing.extend(undocumented_fields(sub, here))
    if "items" in schema:
        missing.extend(undocumented_fields(schema["items"], f"{path}[]"))
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        missing.extend(undocumented_fields(additional, f"{path}{{}}"))
    return missing
