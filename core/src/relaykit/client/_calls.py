"""Every request of the API, built once for :class:`~relaykit.client.Client` and
:class:`~relaykit.client.AsyncClient`.

A :class:`Call` is what one method sends (method, path, query, body, headers) and the
envelope Struct its answer decodes into. The two clients differ only in how they send it:
building, the retry rule, decoding, paging and the mapping of failures to exceptions are all
here, so the sync and async faces cannot drift apart. The optional arguments of each list
and write are declared once too, as TypedDicts the clients' methods take as ``**kwargs``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Protocol, TypedDict, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from relaykit import __version__
from relaykit.client.errors import UnexpectedResponse, error_from_response
from relaykit.wire import (
    UNSET,
    AuditEventPage,
    CreateIntegration,
    CreateRoutingRule,
    Deleted,
    DeliveryAttemptEnvelope,
    DeliveryAttemptPage,
    IntegrationEnvelope,
    IntegrationPage,
    IntegrationWebhookEnvelope,
    OperationEnvelope,
    OperationPage,
    PageLinks,
    ProviderList,
    RoutingRuleEnvelope,
    RoutingRulePage,
    UnsetType,
    UpdateIntegration,
    UpdateRoutingRule,
    WebhookEventEnvelope,
    WebhookEventPage,
)

API = "/api/v1"
INTEGRATIONS = f"{API}/integrations"
ROUTING_RULES = f"{API}/routing-rules"
OPERATIONS = f"{API}/operations"
DELIVERY_ATTEMPTS = f"{API}/delivery-attempts"
WEBHOOK_EVENTS = f"{API}/webhook-events"
AUDIT_EVENTS = f"{API}/audit-events"

E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)
T_co = TypeVar("T_co", covariant=True)
H = TypeVar("H", httpx.Client, httpx.AsyncClient)
Tr = TypeVar("Tr", httpx.BaseTransport, httpx.AsyncBaseTransport)

#: Failures of a connection that was never made: the server cannot have seen the request.
#: Only these are retried, and only for a GET. A read timeout or a dropped connection may
#: come after the server acted, and an HTTP status is the server's answer: both are final.
RETRYABLE_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
)
BACKOFF_BASE = 0.1
BACKOFF_MAX = 2.0


# -- the optional arguments, declared once --------------------------------------------------
# ``None`` (or leaving one out) means "no filter". ``page`` is in the list methods only; the
# iterators start at page 1 and follow ``links.next``.


class IntegrationFilters(TypedDict, total=False):
    status: str | None  # pending_verify, active, inactive, error
    category: str | None  # payment, communication, …
    per_page: int | None  # default 25, at most 100


class IntegrationQuery(IntegrationFilters, total=False):
    page: int | None


class RoutingRuleFilters(TypedDict, total=False):
    capability: str | None
    per_page: int | None


class RoutingRuleQuery(RoutingRuleFilters, total=False):
    page: int | None


class OperationFilters(TypedDict, total=False):
    capability: str | None
    status: str | None  # in_progress, succeeded, failed, outcome_unknown
    integration_id: str | None
    idempotency_key: str | None
    per_page: int | None


class OperationQuery(OperationFilters, total=False):
    page: int | None


class DeliveryAttemptFilters(TypedDict, total=False):
    operation_id: str | None
    integration_id: str | None
    capability: str | None
    status: str | None  # in_flight, succeeded, failed, outcome_unknown
    per_page: int | None


class DeliveryAttemptQuery(DeliveryAttemptFilters, total=False):
    page: int | None


class WebhookEventFilters(TypedDict, total=False):
    integration_id: str | None
    type: str | None  # the provider's event type: payment_intent.succeeded, …
    applied: bool | None  # whether it moved a delivery attempt's status
    per_page: int | None


class WebhookEventQuery(WebhookEventFilters, total=False):
    page: int | None


class AuditEventFilters(TypedDict, total=False):
    integration_id: str | None
    action: str | None  # integration.created, routing_rule.updated, … (docs/audit.md)
    actor: str | None  # a token id, "worker" or "cli"
    since: str | None  # ISO 8601: 2026-01-10T08:45:00Z
    until: str | None
    per_page: int | None


class AuditEventQuery(AuditEventFilters, total=False):
    page: int | None


class IntegrationEventFilters(TypedDict, total=False):
    per_page: int | None


class IntegrationEventQuery(IntegrationEventFilters, total=False):
    page: int | None


class IntegrationChanges(TypedDict, total=False):
    """``update_integration``: only what is given is sent (and changes)."""

    credentials: dict[str, Any] | UnsetType
    enabled_capabilities: list[str] | UnsetType
    metadata: dict[str, Any] | UnsetType | None


class RoutingRuleOptions(TypedDict, total=False):
    """``create_routing_rule``'s optional fields; the server's defaults apply to the rest."""

    fallback_integration_id: str | UnsetType | None
    is_default: bool | UnsetType
    priority: int | UnsetType


class RoutingRuleChanges(RoutingRuleOptions, total=False):
    """``update_routing_rule``: only what is given is sent (and changes)."""

    capability: str | UnsetType
    integration_id: str | UnsetType


# -- one request ----------------------------------------------------------------------------


class Paged(Protocol[T_co]):
    """What the paginated envelopes share: their items and the links to the other pages."""

    @property
    def data(self) -> Sequence[T_co]: ...

    @property
    def links(self) -> PageLinks: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Call(Generic[E_co]):
    """One request, and the envelope Struct its 2xx answer decodes into."""

    method: str
    path: str
    envelope: type[E_co]
    params: Mapping[str, str | int] | None = None
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    #: ``POST /operations/{capability}``: a failure that carries ``data`` is an operation.
    operation: bool = False

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        headers = dict(self.headers or {})
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        return http.build_request(
            self.method, self.path, params=self.params, content=self.body, headers=headers
        )

    def should_retry(self, error: Exception, retries_done: int, retries: int) -> bool:
        """Retry a GET whose connection could not be made, ``retries`` times at most."""
        return (
            self.method == "GET" and isinstance(error, RETRYABLE_ERRORS) and retries_done < retries
        )

    def answer(self, response: httpx.Response) -> E_co:
        """The decoded envelope of a 2xx answer; any other answer raises its ApiError."""
        if not response.is_success:
            raise error_from_response(response, operation=self.operation)
        try:
            return msgspec.json.decode(response.content, type=self.envelope)
        except msgspec.DecodeError as exc:  # msgspec.ValidationError is a DecodeError
            raise UnexpectedResponse.of(response, self.envelope.__name__, exc) from None

    def following(self, page: Paged[Any]) -> Call[E_co] | None:
        """The call for the page after ``page`` (its link keeps the filters), or None."""
        if page.links.next is None:
            return None
        return dataclasses.replace(self, path=page.links.next, params=None)


def backoff(retries_done: int) -> float:
    """Seconds to wait before the next retry: 0.1, 0.2, 0.4 … at most 2."""
    return float(min(BACKOFF_BASE * 2**retries_done, BACKOFF_MAX))


class ClientBase(Generic[H, Tr]):
    """What both clients hold: the httpx client, made with their settings, and the retry
    count. Each client says which httpx client it opens."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        transport: Tr | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._retries = retries
        self._http: H = self._open(
            base_url=base_url,
            headers={
                "Accept": "application/json",
                "User-Agent": f"relaykit-client/{__version__}",
                **(headers or {}),
                "Authorization": f"Bearer {token}",
            },
            timeout=timeout,
            transport=transport,
        )

    def _open(self, **options: Any) -> H:
        raise NotImplementedError


def _segment(value: str) -> str:
    """An id as one path segment: ``../x`` or ``a/b`` cannot reach another route."""
    return quote(str(value), safe="")


def _query(values: Mapping[str, Any], allowed: type) -> dict[str, str | int]:
    """The query string's parameters; a name ``allowed`` does not declare is a TypeError,
    as it would be for a plain keyword argument (a typo must not silently drop a filter)."""
    known = set(allowed.__annotations__)  # a TypedDict's keys, its bases' included
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(
            f"unexpected keyword argument {unknown[0]!r} (expected: {', '.join(sorted(known))})"
        )
    return {name: value for name, value in values.items() if value is not None}


def _encode(body: Any) -> bytes:
    # msgspec leaves out a Struct's UNSET fields; a dict goes as it is.
    return msgspec.json.encode(body)


@dataclasses.dataclass(frozen=True, slots=True)
class Listing(Generic[E]):
    """One paginated collection: a page of it, or the first page of an iteration."""

    path: str
    envelope: type[E]
    query: type
    filters: type

    def page(self, values: Mapping[str, Any]) -> Call[E]:
        return Call("GET", self.path, self.envelope, params=_query(values, self.query))

    def first(self, values: Mapping[str, Any]) -> Call[E]:
        return Call("GET", self.path, self.envelope, params=_query(values, self.filters))


# -- the endpoints --------------------------------------------------------------------------

INTEGRATION_LIST = Listing(INTEGRATIONS, IntegrationPage, IntegrationQuery, IntegrationFilters)
ROUTING_RULE_LIST = Listing(ROUTING_RULES, RoutingRulePage, RoutingRuleQuery, RoutingRuleFilters)
OPERATION_LIST = Listing(OPERATIONS, OperationPage, OperationQuery, OperationFilters)
DELIVERY_ATTEMPT_LIST = Listing(
    DELIVERY_ATTEMPTS, DeliveryAttemptPage, DeliveryAttemptQuery, DeliveryAttemptFilters
)
WEBHOOK_EVENT_LIST = Listing(
    WEBHOOK_EVENTS, WebhookEventPage, WebhookEventQuery, WebhookEventFilters
)
AUDIT_EVENT_LIST = Listing(AUDIT_EVENTS, AuditEventPage, AuditEventQuery, AuditEventFilters)


def integration_event_list(integration_id: str) -> Listing[AuditEventPage]:
    """``GET /integrations/{id}/events``: one integration's audit events."""
    path = f"{INTEGRATIONS}/{_segment(integration_id)}/events"
    return Listing(path, AuditEventPage, IntegrationEventQuery, IntegrationEventFilters)


def list_providers() -> Call[ProviderList]:
    return Call("GET", f"{INTEGRATIONS}/providers", ProviderList)


def get_integration(integration_id: str) -> Call[IntegrationEnvelope]:
    return Call("GET", f"{INTEGRATIONS}/{_segment(integration_id)}", IntegrationEnvelope)


def create_integration(
    provider: str,
    credentials: dict[str, Any],
    enabled_capabilities: list[str],
    metadata: dict[str, Any] | UnsetType | None = UNSET,
) -> Call[IntegrationEnvelope]:
    body = CreateIntegration(
        provider=provider,
        credentials=credentials,
        enabled_capabilities=list(enabled_capabilities),
        metadata=metadata,
    )
    return Call("POST", INTEGRATIONS, IntegrationEnvelope, body=_encode(body))


def update_integration(
    integration_id: str, changes: IntegrationChanges
) -> Call[IntegrationEnvelope]:
    path = f"{INTEGRATIONS}/{_segment(integration_id)}"
    return Call("PATCH", path, IntegrationEnvelope, body=_encode(UpdateIntegration(**changes)))


def delete_integration(integration_id: str) -> Call[Deleted]:
    return Call("DELETE", f"{INTEGRATIONS}/{_segment(integration_id)}", Deleted)


def transition_integration(integration_id: str, action: str) -> Call[IntegrationEnvelope]:
    """``POST /integrations/{id}/activate`` or ``…/disable``."""
    path = f"{INTEGRATIONS}/{_segment(integration_id)}/{action}"
    return Call("POST", path, IntegrationEnvelope)


def get_routing_rule(rule_id: str) -> Call[RoutingRuleEnvelope]:
    return Call("GET", f"{ROUTING_RULES}/{_segment(rule_id)}", RoutingRuleEnvelope)


def create_routing_rule(
    capability: str, integration_id: str, options: RoutingRuleOptions
) -> Call[RoutingRuleEnvelope]:
    body = CreateRoutingRule(capability=capability, integration_id=integration_id, **options)
    return Call("POST", ROUTING_RULES, RoutingRuleEnvelope, body=_encode(body))


def update_routing_rule(rule_id: str, changes: RoutingRuleChanges) -> Call[RoutingRuleEnvelope]:
    path = f"{ROUTING_RULES}/{_segment(rule_id)}"
    return Call("PATCH", path, RoutingRuleEnvelope, body=_encode(UpdateRoutingRule(**changes)))


def delete_routing_rule(rule_id: str) -> Call[Deleted]:
    return Call("DELETE", f"{ROUTING_RULES}/{_segment(rule_id)}", Deleted)


def run_operation(
    capability: str, input: Mapping[str, Any] | msgspec.Struct, idempotency_key: str | None
) -> Call[OperationEnvelope]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
    path = f"{OPERATIONS}/{_segment(capability)}"
    return Call(
        "POST", path, OperationEnvelope, body=_encode(input), headers=headers, operation=True
    )


def get_operation(operation_id: str) -> Call[OperationEnvelope]:
    return Call("GET", f"{OPERATIONS}/{_segment(operation_id)}", OperationEnvelope)


def get_delivery_attempt(attempt_id: str) -> Call[DeliveryAttemptEnvelope]:
    path = f"{DELIVERY_ATTEMPTS}/{_segment(attempt_id)}"
    return Call("GET", path, DeliveryAttemptEnvelope)


def get_webhook_event(event_id: str) -> Call[WebhookEventEnvelope]:
    return Call("GET", f"{WEBHOOK_EVENTS}/{_segment(event_id)}", WebhookEventEnvelope)


def get_integration_webhook(integration_id: str) -> Call[IntegrationWebhookEnvelope]:
    path = f"{INTEGRATIONS}/{_segment(integration_id)}/webhook"
    return Call("GET", path, IntegrationWebhookEnvelope)
