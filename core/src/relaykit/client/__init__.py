"""A Python client for relaykit's API: :class:`Client` (blocking) and :class:`AsyncClient`.

Both speak ``/api/v1`` with a tenant's bearer token and decode every answer into the
:mod:`relaykit.wire` Structs the server declares, so a client and a server of the same
release agree on every field. Failure answers raise :class:`ApiError` subclasses. A GET
whose connection could not be made is retried; nothing else is (see :class:`Client`).
docs/client.md is the guide.

::

    from relaykit.client import Client, NotFound

    with Client("http://127.0.0.1:8000", token) as relay:
        for integration in relay.iter_integrations(status="active"):
            print(integration.provider, integration.id)
"""

from relaykit.client._async import AsyncClient
from relaykit.client._calls import (
    AuditEventFilters,
    AuditEventQuery,
    DeliveryAttemptFilters,
    DeliveryAttemptQuery,
    IntegrationChanges,
    IntegrationFilters,
    IntegrationQuery,
    OperationFilters,
    OperationQuery,
    RoutingRuleChanges,
    RoutingRuleFilters,
    RoutingRuleOptions,
    RoutingRuleQuery,
    WebhookEventFilters,
    WebhookEventQuery,
)
from relaykit.client._sync import Client
from relaykit.client.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    LedgerUnavailable,
    NotFound,
    OperationFailed,
    PayloadTooLarge,
    ServerError,
    Unauthenticated,
    UnexpectedResponse,
)
from relaykit.wire import (
    UNSET,
    AuditEvent,
    AuditEventPage,
    DeliveryAttempt,
    DeliveryAttemptPage,
    Integration,
    IntegrationPage,
    IntegrationWebhook,
    Operation,
    OperationPage,
    ProviderSummary,
    RoutingRule,
    RoutingRulePage,
    WebhookEvent,
    WebhookEventPage,
)

__all__ = [
    "UNSET",
    "ApiError",
    "AsyncClient",
    "AuditEvent",
    "AuditEventFilters",
    "AuditEventPage",
    "AuditEventQuery",
    "Client",
    "Conflict",
    "DeliveryAttempt",
    "DeliveryAttemptFilters",
    "DeliveryAttemptPage",
    "DeliveryAttemptQuery",
    "Integration",
    "IntegrationChanges",
    "IntegrationFilters",
    "IntegrationPage",
    "IntegrationQuery",
    "IntegrationWebhook",
    "InvalidRequest",
    "LedgerUnavailable",
    "NotFound",
    "Operation",
    "OperationFailed",
    "OperationFilters",
    "OperationPage",
    "OperationQuery",
    "PayloadTooLarge",
    "ProviderSummary",
    "RoutingRule",
    "RoutingRuleChanges",
    "RoutingRuleFilters",
    "RoutingRuleOptions",
    "RoutingRulePage",
    "RoutingRuleQuery",
    "ServerError",
    "Unauthenticated",
    "UnexpectedResponse",
    "WebhookEvent",
    "WebhookEventFilters",
    "WebhookEventPage",
    "WebhookEventQuery",
]
