"""The API's types on the wire: every request body and every response of ``/api/v1``.

The server declares its handlers with these Structs (so the OpenAPI document at
``/schema/openapi.json`` describes them) and :mod:`relaykit.client` decodes responses into
the same ones. They describe the contract (shared/spec/managing-integrations.md) exactly:
the envelope ``{"success", "message", "data", "meta"}`` (``links`` on lists), a failure's
``code``, a 422's ``errors`` keyed by field.

Request bodies are decoded strictly (no ``"5"`` for ``5``, unknown fields refused); what a
field *means* (a provider that exists, credentials that fit its schema, an integration of
the tenant's) is checked by the services, which report every problem at once.
``UNSET`` marks a field that was not sent, distinct from ``null``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "UNSET",
    "AuditEvent",
    "AuditEventPage",
    "CreateIntegration",
    "CreateRoutingRule",
    "CredentialFieldInfo",
    "Deleted",
    "DeliveryAttempt",
    "DeliveryAttemptEnvelope",
    "DeliveryAttemptPage",
    "ErrorBody",
    "Integration",
    "IntegrationEnvelope",
    "IntegrationPage",
    "IntegrationWebhook",
    "IntegrationWebhookEnvelope",
    "LedgerUnavailableBody",
    "NoMeta",
    "Operation",
    "OperationEnvelope",
    "OperationError",
    "OperationFailureBody",
    "OperationPage",
    "OperationRef",
    "PageLinks",
    "PageMeta",
    "ProviderList",
    "ProviderSummary",
    "RoutingRule",
    "RoutingRuleEnvelope",
    "RoutingRulePage",
    "UnsetType",
    "UpdateIntegration",
    "UpdateRoutingRule",
    "ValidationErrorBody",
    "WebhookEvent",
    "WebhookEventEnvelope",
    "WebhookEventPage",
    "WebhookReceipt",
    "WebhookReceived",
    "sent_fields",
]


def sent_fields(body: msgspec.Struct) -> dict[str, Any]:
    """A request body's fields as the client sent them (by wire name), leaving out those
    it did not send: what the services validate. (From the class's field tables rather than
    ``msgspec.structs.fields``, which reads the annotations on every call.)"""
    cls = type(body)
    return {
        wire_name: value
        for name, wire_name in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True)
        if (value := getattr(body, name)) is not UNSET
    }


# -- resources ------------------------------------------------------------------------------


class Integration(msgspec.Struct, frozen=True):
    """An integration as the API shows it: sensitive credential fields always null."""

    id: str
    provider: str
    display_name: str
    category: str
    status: str
    enabled_capabilities: list[str]
    credentials: dict[str, Any]
    metadata: dict[str, Any]
    verified_at: str | None
    created_at: str
    updated_at: str


class CredentialFieldInfo(msgspec.Struct, frozen=True):
    """One credential field as the catalog shows it: the contract shows exactly these keys."""

    type: str
    sensitive: bool
    required: bool


class ProviderSummary(msgspec.Struct, frozen=True):
    """A provider of the catalog, with whether the tenant has configured it."""

    name: str
    display_name: str
    category: str
    capabilities: list[str]
    credential_schema: dict[str, CredentialFieldInfo]
    is_configured: bool


class RoutingRule(msgspec.Struct, frozen=True):
    id: str
    capability: str
    integration_id: str
    fallback_integration_id: str | None
    is_default: bool
    priority: int
    created_at: str
    updated_at: str


class DeliveryAttempt(msgspec.Struct, frozen=True):
    """One provider call of an operation. ``status`` is ``in_flight`` until it ends.

    ``provider_object_id`` is the provider's id of what a successful try made (a message, a
    payment, a refund); ``delivery_status`` what the provider's webhooks said became of it
    since (``delivered``, ``succeeded`` …; null until one says), which only moves forward.
    """

    id: str
    operation_id: str | None
    integration_id: str
    provider: str
    capability: str
    status: str
    outcome: str | None
    provider_status_code: int | None
    provider_code: str | None
    message: str | None
    duration_ms: float | None
    started_at: str | None
    completed_at: str | None
    provider_object_id: str | None = None
    delivery_status: str | None = None
    delivery_updated_at: str | None = None


class WebhookEvent(msgspec.Struct, frozen=True):
    """One event a provider's webhook carried, stored once per integration and dedupe key.

    ``applied`` says whether it moved a delivery attempt's ``delivery_status``
    (``attempt_count`` how many): an event about something relaykit never sent, or one
    that would move an attempt backwards (a late ``sent`` after ``delivered``), is stored
    and not applied.
    """

    id: str
    integration_id: str
    provider: str
    dedupe_key: str
    type: str
    object_id: str | None
    status: str | None
    provider_code: str | None
    occurred_at: str | None
    received_at: str
    applied: bool
    attempt_count: int


class AuditEvent(msgspec.Struct, frozen=True):
    """One change to the tenant's configuration, who made it and when (docs/audit.md).

    ``actor`` is the id of the token whose request made the change, ``worker`` (the
    verification worker) or ``cli`` (the command line); ``details`` names what changed,
    never a credential's value. ``seq``, ``prev_digest`` and ``digest`` link the tenant's
    events into a hash chain (``relaykit audit verify`` checks it).
    """

    id: str
    action: str
    actor: str
    request_id: str | None
    resource_type: str
    resource_id: str | None
    integration_id: str | None
    status_before: str | None
    status_after: str | None
    details: dict[str, Any]
    created_at: str
    seq: int
    prev_digest: str
    digest: str


class WebhookReceipt(msgspec.Struct, frozen=True):
    """What a webhook delivery did: the events it held, how many of them moved an attempt,
    and how many were repeats of events already stored."""

    events: int
    applied: int
    duplicates: int


class IntegrationWebhook(msgspec.Struct, frozen=True):
    """Where an integration's provider sends its webhooks. ``url`` is null while
    ``RELAYKIT_PUBLIC_URL`` is unset (``path`` is then what to append to the public base);
    ``secret_configured`` says whether the credentials the check needs are stored (Stripe's
    optional ``webhook_secret``)."""

    url: str | None
    path: str
    receives_webhooks: bool
    secret_configured: bool


class OperationError(msgspec.Struct, frozen=True):
    code: str
    message: str


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    """An operation: the capability's ``result`` when it succeeded, else ``error``, and every
    attempt. The ledger's view also carries the ``idempotency_key`` it was sent with."""

    id: str
    capability: str
    status: str
    integration_id: str | None
    idempotency_key: str | UnsetType | None = UNSET
    result: Any = None
    error: OperationError | None = None
    attempts: list[DeliveryAttempt]
    created_at: str | None
    completed_at: str | None


class OperationRef(msgspec.Struct, frozen=True):
    id: str


# -- envelopes ------------------------------------------------------------------------------


class NoMeta(msgspec.Struct, frozen=True):
    """The ``meta`` of a single resource: an empty object."""


class PageMeta(msgspec.Struct, frozen=True):
    current_page: int
    per_page: int
    total: int
    last_page: int


class PageLinks(msgspec.Struct, frozen=True):
    """Paths of the list's pages, with the request's filters kept."""

    first: str
    last: str
    prev: str | None
    next: str | None


class _Success(msgspec.Struct, frozen=True, kw_only=True):
    success: Literal[True] = True
    message: str | UnsetType = UNSET


class IntegrationEnvelope(_Success, frozen=True, kw_only=True):
    data: Integration
    meta: NoMeta = NoMeta()


class IntegrationPage(_Success, frozen=True, kw_only=True):
    data: list[Integration]
    meta: PageMeta
    links: PageLinks


class ProviderList(_Success, frozen=True, kw_only=True):
    data: list[ProviderSummary]
    meta: NoMeta = NoMeta()


class RoutingRuleEnvelope(_Success, frozen=True, kw_only=True):
    data: RoutingRule
    meta: NoMeta = NoMeta()


class RoutingRulePage(_Success, frozen=True, kw_only=True):
    data: list[RoutingRule]
    meta: PageMeta
    links: PageLinks


class OperationEnvelope(_Success, frozen=True, kw_only=True):
    data: Operation
    meta: NoMeta = NoMeta()


class OperationPage(_Success, frozen=True, kw_only=True):
    data: list[Operation]
    meta: PageMeta
    links: PageLinks


class DeliveryAttemptEnvelope(_Success, frozen=True, kw_only=True):
    data: DeliveryAttempt
    meta: NoMeta = NoMeta()


class DeliveryAttemptPage(_Success, frozen=True, kw_only=True):
    data: list[DeliveryAttempt]
    meta: PageMeta
    links: PageLinks


class WebhookEventEnvelope(_Success, frozen=True, kw_only=True):
    data: WebhookEvent
    meta: NoMeta = NoMeta()


class WebhookEventPage(_Success, frozen=True, kw_only=True):
    data: list[WebhookEvent]
    meta: PageMeta
    links: PageLinks


class AuditEventPage(_Success, frozen=True, kw_only=True):
    data: list[AuditEvent]
    meta: PageMeta
    links: PageLinks


class WebhookReceived(_Success, frozen=True, kw_only=True):
    """``POST /webhooks/{integration_id}``'s answer (a provider retries anything but 2xx)."""

    data: WebhookReceipt
    meta: NoMeta = NoMeta()


class IntegrationWebhookEnvelope(_Success, frozen=True, kw_only=True):
    data: IntegrationWebhook
    meta: NoMeta = NoMeta()


class Deleted(msgspec.Struct, frozen=True, kw_only=True):
    """A delete's answer: a message and nothing else."""

    success: Literal[True] = True
    message: str


# -- failures -------------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Any failure but a 422: a message and a machine-readable ``code``
    (``unauthenticated``, ``not_found``, ``idempotency_key_conflict`` …)."""

    success: Literal[False] = False
    message: str
    code: str


class ValidationErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """A 422: every problem, keyed by field (``credentials.secret_key``)."""

    success: Literal[False] = False
    message: str
    errors: dict[str, list[str]]


class OperationFailureBody(msgspec.Struct, frozen=True, kw_only=True):
    """An operation that did not succeed: what was tried is in ``data``."""

    success: Literal[False] = False
    message: str
    code: str
    data: Operation


class LedgerUnavailableBody(msgspec.Struct, frozen=True, kw_only=True):
    """503: the ledger could not be written; ``data.id`` names the operation when one was
    recorded."""

    success: Literal[False] = False
    message: str
    code: str
    data: OperationRef | UnsetType = UNSET


# -- request bodies -------------------------------------------------------------------------


class CreateIntegration(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/integrations``. The credentials' fields are the provider's
    (``GET /api/v1/integrations/providers``; the OpenAPI document lists them per provider)."""

    provider: str
    credentials: dict[str, Any]
    enabled_capabilities: list[str]
    metadata: dict[str, Any] | UnsetType | None = UNSET


class UpdateIntegration(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /api/v1/integrations/{id}``: only the fields sent change. In ``credentials``
    only the keys sent change; an optional one sent as ``null`` is cleared."""

    credentials: dict[str, Any] | UnsetType = UNSET
    enabled_capabilities: list[str] | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType | None = UNSET


class CreateRoutingRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    capability: str
    integration_id: str
    fallback_integration_id: str | UnsetType | None = UNSET
    is_default: bool | UnsetType = UNSET
    priority: int | UnsetType = UNSET


class UpdateRoutingRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    capability: str | UnsetType = UNSET
    integration_id: str | UnsetType = UNSET
    fallback_integration_id: str | UnsetType | None = UNSET
    is_default: bool | UnsetType = UNSET
    priority: int | UnsetType = UNSET
