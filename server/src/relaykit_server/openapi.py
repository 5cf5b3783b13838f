"""The served OpenAPI document: Litestar's, completed at start from the installed catalog.

Litestar writes the document from the handlers' types (:mod:`relaykit.wire`). What the types
alone cannot say depends on the plugins installed, and is added here the first time the
document is served (the catalog is loaded by then; a plugin installed later shows up at the
next start):

* **Credentials per provider.** The create body is a ``oneOf`` of one schema per provider,
  discriminated by ``provider``: that provider's credential fields (``writeOnly`` and
  ``x-sensitive`` where sensitive, ``required``, pattern and lengths) and its capabilities.
  A PATCH carries no ``provider``, so its ``credentials`` is an ``anyOf`` of each provider's
  fields, all optional; the integration's provider decides which applies.
* **Operations per capability.** ``POST /api/v1/operations/{capability}`` is one handler;
  the document lists one path per capability (``/api/v1/operations/send_sms`` …) with that
  capability's input, its result inside the operation envelope, the ``Idempotency-Key``
  header, and every answer a dispatch can give. The ledger's read is named
  ``/api/v1/operations/{operation_id}``.
* **Links** from each create to the operations its id leads to, and from each operation
  run to its ledger entry and attempts.
* **Security.** Every ``/api/v1`` operation needs the bearer token (the router declares it);
  the operations outside it (``/health``, the webhook receiver) are marked ``security: []``.
* **The webhook receiver** takes the provider's body as it is (the handler reads it raw, so
  Litestar declares none): its request body is described here.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.openapi.plugins import JsonRenderPlugin

from relaykit.capabilities import CapabilityContract
from relaykit.catalog import Catalog
from relaykit.ledger import IDEMPOTENCY_KEY_PATTERN
from relaykit.providers import CredentialField, Provider
from relaykit.validation import DEFAULT_MAX_CREDENTIAL_LENGTH
from relaykit.wire import (
    ErrorBody,
    LedgerUnavailableBody,
    OperationFailureBody,
    ValidationErrorBody,
)

API_PREFIX = "/api/v1"
SCHEMAS = "#/components/schemas/"
_JSON_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMAS + name}


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _credential_property(spec: CredentialField, *, nullable: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _JSON_TYPES[spec.type]}
    if spec.type == "string":
        schema["minLength"] = spec.min_length or 1
        schema["maxLength"] = spec.max_length or DEFAULT_MAX_CREDENTIAL_LENGTH
        if spec.pattern is not None:
            schema["pattern"] = spec.pattern
    if spec.description:
        schema["description"] = spec.description
    if spec.sensitive:
        # Sealed at rest, always null when read back.
        schema["writeOnly"] = True
        schema["x-sensitive"] = True
    if nullable:
        schema["type"] = [schema["type"], "null"]
    return schema


def _credentials(provider: Provider, *, partial: bool) -> dict[str, Any]:
    fields = provider.credential_schema
    schema: dict[str, Any] = {
        "type": "object",
        "title": f"{provider.display_name} credentials{' update' if partial else ''}",
        "properties": {
            name: _credential_property(spec, nullable=partial and not spec.required)
            for name, spec in fields.items()
        },
        "additionalProperties": False,
    }
    required = [name for name, spec in fields.items() if spec.required]
    if required and not partial:
        schema["required"] = required
    return schema


def _create_body(provider: Provider, credentials: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"Configure {provider.display_name}",
        "properties": {
            "provider": {"type": "string", "const": provider.name},
            "credentials": _ref(credentials),
            "enabled_capabilities": {
                "type": "array",
                "items": {"type": "string", "enum": list(provider.capabilities)},
                "uniqueItems": True,
            },
            "metadata": {"type": ["object", "null"]},
        },
        "required": ["provider", "credentials", "enabled_capabilities"],
        "additionalProperties": False,
    }


def _add_credentials(document: dict[str, Any], catalog: Catalog) -> None:
    providers = sorted(catalog, key=lambda p: p.name)
    if not providers:
        return  # no plugin installed: the bodies stay as their Structs describe them
    schemas = document["components"]["schemas"]
    mapping: dict[str, str] = {}
    partials: list[dict[str, str]] = []
    for provider in providers:
        stem = provider.name
        schemas[f"Credentials.{stem}"] = _credentials(provider, partial=False)
        schemas[f"CredentialsUpdate.{stem}"] = _credentials(provider, partial=True)
        schemas[f"CreateIntegration.{stem}"] = _create_body(provider, f"Credentials.{stem}")
        mapping[provider.name] = SCHEMAS + f"CreateIntegration.{stem}"
        partials.append(_ref(f"CredentialsUpdate.{stem}"))
    integrations = document["paths"][f"{API_PREFIX}/integrations"]["post"]
    integrations["requestBody"]["content"] = _json(
        {
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "provider", "mapping": mapping},
        }
    )
    update = copy.deepcopy(schemas["UpdateIntegration"])
    update["properties"]["credentials"] = {
        "anyOf": partials,
        "description": "Only the keys sent change; an optional one sent as null is cleared. "
        "The integration's provider decides which fields apply.",
    }
    update["title"] = "UpdateIntegration (per provider)"
    schemas["UpdateIntegration.credentials"] = update
    patch = document["paths"][f"{API_PREFIX}/integrations/{{integration_id}}"]["patch"]
    patch["requestBody"]["content"] = _json(_ref("UpdateIntegration.credentials"))


def _error(description: str, *names: str) -> dict[str, Any]:
    schema = _ref(names[0]) if len(names) == 1 else {"anyOf": [_ref(n) for n in names]}
    return {"description": description, "content": _json(schema)}


def _operation_path(capability: str, contract: CapabilityContract) -> dict[str, Any]:
    input_name, result_name = contract.input.__name__, contract.output.__name__
    succeeded = {
        "allOf": [
            _ref("OperationEnvelope"),
            {
                "type": "object",
                "properties": {
                    "data": {"type": "object", "properties": {"result": _ref(result_name)}}
                },
            },
        ]
    }
    return {
        "post": {
            "tags": ["operations"],
            "summary": contract.description or f"Run {capability}",
            "description": f"Run `{capability}` through the tenant's routing rules, with "
            "fallback. A repeat with the same Idempotency-Key answers what the first answered.",
            "operationId": f"run_{capability}",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Makes a retry safe: 1 to 255 visible ASCII characters.",
                    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN.pattern},
                }
            ],
            "requestBody": {"required": True, "content": _json(_ref(input_name))},
            "responses": {
                "201": {
                    "description": "The operation succeeded (a replay answers the same).",
                    "content": _json(succeeded),
                },
                "400": _error("The body is not JSON (code `malformed_json`).", "ErrorBody"),
                "401": _error("No valid bearer token (code `unauthenticated`).", "ErrorBody"),
                "409": _error(
                    "No active integration can serve it (`no_active_provider`, with the "
                    "operation), or its Idempotency-Key is in use or its outcome unknown.",
                    "ErrorBody",
                    "OperationFailureBody",
                ),
                "413": _error("The body is too large (code `payload_too_large`).", "ErrorBody"),
                "422": _error(
                    "The input is invalid (keyed by field), or the provider rejected it "
                    "(`provider_rejected`, with the operation).",
                    "ValidationErrorBody",
                    "OperationFailureBody",
                ),
                "502": _error(
                    "No provider could carry it out now, or the provider's answer was lost "
                    "(`provider_unavailable`, `provider_outcome_unknown`).",
                    "OperationFailureBody",
                ),
                "503": _error(
                    "The ledger could not be written (code `ledger_unavailable`), or no "
                    "integration served it because the key provider could not open their "
                    "credentials (code `key_provider_unavailable`, with the operation; "
                    "nothing was sent on them and its Idempotency-Key is released).",
                    "LedgerUnavailableBody",
                    "OperationFailureBody",
                ),
            },
            "security": [{"bearer": []}],
        }
    }


#: The failure bodies only the per-capability paths (written here) refer to.
FAILURES = (ErrorBody, ValidationErrorBody, OperationFailureBody, LedgerUnavailableBody)


def _add_schemas(document: dict[str, Any], types: list[type[Any]]) -> None:
    """Components for ``types`` (and what they refer to), by class name as Litestar names
    them; one Litestar already wrote is kept."""
    _, components = msgspec.json.schema_components(types, ref_template=SCHEMAS + "{name}")
    schemas = document["components"]["schemas"]
    for name, schema in components.items():
        for field in schema.get("properties", {}).values():
            _constant(field)
        schemas.setdefault(name, schema)


def _constant(field: dict[str, Any]) -> None:
    """msgspec writes a ``Literal[False]`` as ``{"enum": [false]}``; Litestar (and client
    generators) expect ``{"type": "boolean", "const": false}``."""
    choices = field.get("enum")
    if isinstance(choices, list) and len(choices) == 1 and isinstance(choices[0], bool):
        del field["enum"]
        field.update(type="boolean", const=choices[0])


def _drop_litestar_400(document: dict[str, Any]) -> None:
    """Litestar documents a 400 with its own error body for every operation with parameters;
    relaykit answers a bad parameter with a 422 in the envelope, and a 400 only for a body
    that is not JSON (declared with ErrorBody where a body is taken)."""
    for item in document["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            responses = operation.get("responses", {})
            bad = responses.get("400", {}).get("content", {}).get("application/json", {})
            if "400" in responses and bad.get("schema") != _ref("ErrorBody"):
                del responses["400"]


def _add_operations(document: dict[str, Any], catalog: Catalog) -> None:
    paths = document["paths"]
    read = paths.pop(f"{API_PREFIX}/operations/{{capability}}", None)
    if read is not None:
        for operation in read.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "capability":
                    parameter["name"] = "operation_id"
        paths[f"{API_PREFIX}/operations/{{operation_id}}"] = read
    contracts = dict(sorted(catalog.contracts.items()))
    types: set[type[Any]] = {c.input for c in contracts.values()}
    types |= {c.output for c in contracts.values()}
    _add_schemas(document, [*sorted(types, key=lambda t: t.__name__), *FAILURES])
    for capability, contract in contracts.items():
        paths[f"{API_PREFIX}/operations/{capability}"] = _operation_path(capability, contract)


#: What a created resource's id leads to: (path of the create, its success status, the
#: parameter the id fills, the operations that take it).
LINKS = (
    (
        "/integrations",
        "201",
        "integration_id",
        (
            "getIntegration",
            "updateIntegration",
            "activateIntegration",
            "disableIntegration",
            "deleteIntegration",
        ),
    ),
    (
        "/routing-rules",
        "201",
        "rule_id",
        ("getRoutingRule", "updateRoutingRule", "deleteRoutingRule"),
    ),
)


def _add_links(document: dict[str, Any]) -> None:
    """OpenAPI links from each create to what its id leads to, and from each operation run
    to its ledger entry and delivery attempts: clients and stateful testers follow them."""
    paths = document["paths"]
    for path, status, parameter, targets in LINKS:
        if API_PREFIX + path not in paths:
            continue
        response = paths[API_PREFIX + path]["post"]["responses"][status]
        response["links"] = {
            target: {"operationId": target, "parameters": {parameter: "$response.body#/data/id"}}
            for target in targets
        }
    for item in paths.values():
        operation = item.get("post", {})
        if operation.get("operationId", "").startswith("run_"):
            operation["responses"]["201"]["links"] = {
                "getOperation": {
                    "operationId": "getOperation",
                    "parameters": {"operation_id": "$response.body#/data/id"},
                },
                "listDeliveryAttempts": {
                    "operationId": "listDeliveryAttempts",
                    "parameters": {"operation_id": "$response.body#/data/id"},
                },
            }


WEBHOOK_PATH = "/webhooks/{integration_id}"


def _add_webhook_body(document: dict[str, Any]) -> None:
    operation = document["paths"].get(WEBHOOK_PATH, {}).get("post")
    if operation is None:
        return
    operation["requestBody"] = {
        "required": True,
        "description": "The provider's webhook, exactly as it sends it (form-encoded for "
        "Twilio and Plivo, JSON for Stripe); its signature headers are checked against the "
        "raw bytes.",
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "application/json": {"schema": {"type": "object"}},
        },
    }


def _mark_public(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        if not path.startswith(API_PREFIX + "/"):
            for operation in item.values():
                if isinstance(operation, dict):
                    operation["security"] = []


def complete(document: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    """``document`` (Litestar's, as a dict) with what depends on the installed plugins."""
    completed = copy.deepcopy(document)
    _add_credentials(completed, catalog)
    _add_operations(completed, catalog)
    _drop_litestar_400(completed)
    _add_links(completed)
    _add_webhook_body(completed)
    _mark_public(completed)
    return completed


def complete_app_document(app: Litestar, catalog: Catalog) -> None:
    """Build the app's completed document (at start, once the catalog is loaded)."""
    litestar_document = app.openapi_schema.to_schema()
    app.state.openapi_document = complete(litestar_document, catalog)


class CompletedJson(JsonRenderPlugin):
    """``/schema/openapi.json``: the completed document."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        document = request.app.state.get("openapi_document") or openapi_schema
        rendered: bytes = self.render_json(request, document)
        return rendered
