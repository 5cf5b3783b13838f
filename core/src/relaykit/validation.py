"""Validating integration requests against the provider's credential schema and capabilities.

Every problem is collected (not only the first) and raised as one
:class:`~relaykit.errors.ValidationError`, keyed by field path the way the contract keys them
(``credentials.secret_key``, ``enabled_capabilities``). Messages never repeat a submitted
value: the value might be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from relaykit.catalog import Catalog
from relaykit.errors import ValidationError
from relaykit.providers import CredentialField, Provider

#: Limits on the tenant's free-form metadata.
METADATA_MAX_BYTES = 16 * 1024
METADATA_MAX_DEPTH = 8
#: metadata.verification is written by relaykit (the last verification result); a value sent
#: under this key is ignored, so that a client can send back what it read.
RESERVED_METADATA_KEY = "verification"
#: The longest credential value accepted when the schema gives no max_length.
DEFAULT_MAX_CREDENTIAL_LENGTH = 4096

CREATE_FIELDS = ("provider", "credentials", "enabled_capabilities", "metadata")
UPDATE_FIELDS = ("credentials", "enabled_capabilities", "metadata")

_TYPE_NAMES = {"string": "a string", "integer": "an integer", "boolean": "true or false"}


class Problems:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


class CreateRequest(msgspec.Struct, frozen=True):
    provider: Provider
    public: dict[str, Any]
    secret: dict[str, Any]
    enabled_capabilities: list[str]
    metadata: dict[str, Any]


class UpdateRequest(msgspec.Struct, frozen=True):
    #: credential fields sent, by name; ``None`` clears an optional field
    credentials: dict[str, Any] | None
    enabled_capabilities: list[str] | None
    metadata: dict[str, Any] | None


def _unknown_fields(
    payload: Mapping[str, Any], allowed: tuple[str, ...], problems: Problems
) -> None:
    for key in payload:
        if key not in allowed:
            problems.add(str(key), "This field is not allowed.")


def validate_create(payload: Any, catalog: Catalog) -> CreateRequest:
    problems = Problems()
    if not isinstance(payload, dict):
        raise ValidationError({"body": ["The request body must be a JSON object."]})
    _unknown_fields(payload, CREATE_FIELDS, problems)

    provider: Provider | None = None
    name = payload.get("provider")
    if name is None or name == "":
        problems.add("provider", "The provider field is required.")
    elif not isinstance(name, str):
        problems.add("provider", "The provider field must be a string.")
    else:
        provider = catalog.get(name)
        if provider is None:
            problems.add("provider", "The selected provider is invalid.")

    credentials = payload.get("credentials")
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    if credentials is None:
        problems.add("credentials", "The credentials field is required.")
    elif not isinstance(credentials, dict):
        problems.add("credentials", "The credentials field must be an object.")
    elif provider is not None:
        values = check_credentials(provider, credentials, problems, partial=False)
        public, secret = split_credentials(provider, values)

    capabilities = payload.get("enabled_capabilities")
    checked_capabilities: list[str] = []
    if capabilities is None:
        problems.add("enabled_capabilities", "The enabled_capabilities field is required.")
    else:
        checked_capabilities = check_capabilities(provider, capabilities, problems)

    metadata = check_metadata(payload.get("metadata", {}), problems)
    problems.raise_if_any()
    assert provider is not None
    return CreateRequest(provider, public, secret, checked_capabilities, metadata)


def validate_update(payload: Any, provider: Provider) -> UpdateRequest:
    problems = Problems()
    if not isinstance(payload, dict):
        raise ValidationError({"body": ["The request body must be a JSON object."]})
    _unknown_fields(payload, UPDATE_FIELDS, problems)

    credentials: dict[str, Any] | None = None
    if "credentials" in payload:
        raw = payload["credentials"]
        if not isinstance(raw, dict):
            problems.add("credentials", "The credentials field must be an object.")
        else:
            credentials = check_credentials(provider, raw, problems, partial=True)

    capabilities = None
    if "enabled_capabilities" in payload:
        capabilities = check_capabilities(provider, payload["enabled_capabilities"], problems)

    metadata = None
    if "metadata" in payload:
        metadata = check_metadata(payload["metadata"], problems)
    problems.raise_if_any()
    return UpdateRequest(credentials, capabilities, metadata)


def check_credentials(
    provider: Provider, credentials: Mapping[str, Any], problems: Problems, *, partial: bool
) -> dict[str, Any]:
    """The credential values that pass the schema.

    On create (``partial=False``) every required field must be there and not empty. On
    update only the fields sent are checked: a required field may not be sent empty or null,
    an optional one sent as null is cleared.
    """
    values: dict[str, Any] = {}
    schema = provider.credential_schema
    for key in credentials:
        if key not in schema:
            problems.add(f"credentials.{key}", "This field is not allowed.")
    for key, spec in schema.items():
        path = f"credentials.{key}"
        if key not in credentials:
            if not partial and spec.required:
                problems.add(path, f"The {path} field is required.")
            continue
        value = credentials[key]
        if value is None or value == "":
            if spec.required:
                problems.add(path, f"The {path} field is required.")
            elif partial:
                values[key] = None
            continue
        message = _field_problem(path, spec, value)
        if message:
            problems.add(path, message)
        else:
            values[key] = value
    return values


def _field_problem(path: str, spec: CredentialField, value: Any) -> str | None:
    expected = {"string": str, "integer": int, "boolean": bool}[spec.type]
    if not isinstance(value, expected) or (spec.type == "integer" and isinstance(value, bool)):
        return f"The {path} field must be {_TYPE_NAMES[spec.type]}."
    if not isinstance(value, str):
        return None
    max_length = spec.max_length or DEFAULT_MAX_CREDENTIAL_LENGTH
    if len(value) > max_length:
        return f"The {path} field must not be greater than {max_length} characters."
    if spec.min_length is not None and len(value) < spec.min_length:
        return f"The {path} field must be at least {spec.min_length} characters."
    if value != value.strip():
        return f"The {path} field must not start or end with white space."
    if spec.pattern is not None and not re.search(spec.pattern, value):
        return f"The {path} field format is invalid."
    return None


def split_credentials(
    provider: Provider, values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(public, secret)``: the fields stored as they are, and the fields to seal."""
    sensitive = provider.sensitive_fields
    public = {k: v for k, v in values.items() if k not in sensitive}
    secret = {k: v for k, v in values.items() if k in sensitive}
    return public, secret


def check_capabilities(provider: Provider | None, value: Any, problems: Problems) -> list[str]:
    key = "enabled_capabilities"
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.add(key, f"The {key} field must be an array of capability names.")
        return []
    if len(set(value)) != len(value):
        problems.add(key, f"The {key} field must not contain duplicates.")
    if provider is not None:
        unknown = [item for item in value if item not in provider.capabilities]
        if unknown:
            problems.add(
                key,
                f"The {key} must be a subset of the provider's capabilities: "
                f"{', '.join(provider.capabilities)}.",
            )
    return list(dict.fromkeys(value))


def check_metadata(value: Any, problems: Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add("metadata", "The metadata field must be an object.")
        return {}
    if _depth(value) > METADATA_MAX_DEPTH:
        problems.add(
            "metadata", f"The metadata field must not nest deeper than {METADATA_MAX_DEPTH} levels."
        )
        return {}
    if len(msgspec.json.encode(value)) > METADATA_MAX_BYTES:
        problems.add(
            "metadata", f"The metadata field must not be larger than {METADATA_MAX_BYTES} bytes."
        )
        return {}
    return {k: v for k, v in value.items() if k != RESERVED_METADATA_KEY}


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (a hostile body must not exhaust the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > METADATA_MAX_DEPTH:
                return deepest
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest
