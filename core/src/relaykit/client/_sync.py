"""The blocking client, over ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx
import msgspec

from relaykit import wire
from relaykit.client import _calls
from relaykit.client._calls import Call, ClientBase, Paged

E = TypeVar("E")
T = TypeVar("T")


class Client(ClientBase[httpx.Client, httpx.BaseTransport]):
    """A client of relaykit's API (``/api/v1``) for one tenant's bearer token.

    ::

        with Client("http://127.0.0.1:8000", token) as relay:
            twilio = relay.create_integration("twilio", {...}, ["send_sms"])

    Every method sends one request (the ``iter_*`` methods one per page) and returns the
    response's ``data`` decoded into its :mod:`relaykit.wire` Struct, or raises an
    :class:`~relaykit.client.ApiError` subclass for a failure answer.

    Retries: a GET whose connection could not be made (``httpx.ConnectError``,
    ``httpx.ConnectTimeout``: the server never saw it) is sent again, ``retries`` times at
    most, after 0.1 s, 0.2 s, 0.4 s … (at most 2 s). Nothing else is retried: not a POST,
    PATCH or DELETE (it may have been carried out; send ``run_operation`` again with the
    same ``idempotency_key`` to retry one safely), not a read timeout, not any HTTP status
    (a 503 is the server's answer). A transport failure that is not retried is raised as
    httpx raises it.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000`` (paths are ``/api/v1/…`` below
            it; a base with a path prefix, ``https://example.com/relay``, is kept).
        token: the tenant's bearer token (``relaykit tokens create``).
        timeout: seconds for each of connect, read, write and pool.
        retries: how many times a GET is sent again after a failed connection.
        transport: an httpx transport (``httpx.MockTransport`` in tests).
        headers: extra headers on every request (a tracing header …); they cannot replace
            the token.
    """

    def _open(self, **options: Any) -> httpx.Client:
        return httpx.Client(**options)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[E]) -> E:
        retries_done = 0
        while True:
            try:
                response = self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                if not call.should_retry(exc, retries_done, self._retries):
                    raise
                time.sleep(_calls.backoff(retries_done))
                retries_done += 1
                continue
            return call.answer(response)

    def _iterate(self, call: Call[Paged[T]]) -> Iterator[T]:
        next_call: Call[Paged[T]] | None = call
        while next_call is not None:
            page = self._send(next_call)
            yield from page.data
            next_call = next_call.following(page)

    # -- providers and integrations ---------------------------------------------------------

    def list_providers(self) -> list[wire.ProviderSummary]:
        """``GET /integrations/providers``: the catalog, and whether the tenant configured each."""
        return self._send(_calls.list_providers()).data

    def list_integrations(self, **query: Unpack[_calls.IntegrationQuery]) -> wire.IntegrationPage:
        """One page of integrations (``status``, ``category``, ``page``, ``per_page``)."""
        return self._send(_calls.INTEGRATION_LIST.page(query))

    def iter_integrations(
        self, **filters: Unpack[_calls.IntegrationFilters]
    ) -> Iterator[wire.Integration]:
        """Every integration (``status``, ``category``; ``per_page`` a request), page by page."""
        return self._iterate(_calls.INTEGRATION_LIST.first(filters))

    def get_integration(self, integration_id: str) -> wire.Integration:
        return self._send(_calls.get_integration(integration_id)).data

    def create_integration(
        self,
        provider: str,
        credentials: dict[str, Any],
        enabled_capabilities: list[str],
        *,
        metadata: dict[str, Any] | wire.UnsetType | None = wire.UNSET,
    ) -> wire.Integration:
        """Configure a provider; it is ``pending_verify`` until the worker has checked it."""
        call = _calls.create_integration(provider, credentials, enabled_capabilities, metadata)
        return self._send(call).data

    def update_integration(
        self, integration_id: str, **changes: Unpack[_calls.IntegrationChanges]
    ) -> wire.Integration:
        """Change ``credentials`` (only the keys given), ``enabled_capabilities``, ``metadata``."""
        return self._send(_calls.update_integration(integration_id, changes)).data

    def delete_integration(self, integration_id: str) -> None:
        self._send(_calls.delete_integration(integration_id))

    def activate_integration(self, integration_id: str) -> wire.Integration:
        return self._send(_calls.transition_integration(integration_id, "activate")).data

    def disable_integration(self, integration_id: str) -> wire.Integration:
        return self._send(_calls.transition_integration(integration_id, "disable")).data

    # -- routing rules ----------------------------------------------------------------------

    def list_routing_rules(self, **query: Unpack[_calls.RoutingRuleQuery]) -> wire.RoutingRulePage:
        """One page of rules (``capability``, ``page``, ``per_page``)."""
        return self._send(_calls.ROUTING_RULE_LIST.page(query))

    def iter_routing_rules(
        self, **filters: Unpack[_calls.RoutingRuleFilters]
    ) -> Iterator[wire.RoutingRule]:
        return self._iterate(_calls.ROUTING_RULE_LIST.first(filters))

    def get_routing_rule(self, rule_id: str) -> wire.RoutingRule:
        return self._send(_calls.get_routing_rule(rule_id)).data

    def create_routing_rule(
        self, capability: str, integration_id: str, **options: Unpack[_calls.RoutingRuleOptions]
    ) -> wire.RoutingRule:
        """A rule (``fallback_integration_id``, ``is_default``, ``priority`` optional)."""
        call = _calls.create_routing_rule(capability, integration_id, options)
        return self._send(call).data

    def update_routing_rule(
        self, rule_id: str, **changes: Unpack[_calls.RoutingRuleChanges]
    ) -> wire.RoutingRule:
        return self._send(_calls.update_routing_rule(rule_id, changes)).data

    def delete_routing_rule(self, rule_id: str) -> None:
        self._send(_calls.delete_routing_rule(rule_id))

    # -- operations and delivery attempts ---------------------------------------------------

    def run_operation(
        self,
        capability: str,
        input: Mapping[str, Any] | msgspec.Struct,
        *,
        idempotency_key: str | None = None,
    ) -> wire.Operation:
        """Run ``capability`` through routing; a failed operation raises OperationFailed."""
        return self._send(_calls.run_operation(capability, input, idempotency_key)).data

    def list_operations(self, **query: Unpack[_calls.OperationQuery]) -> wire.OperationPage:
        """One page of the ledger, newest first (``capability``, ``status``,
        ``integration_id``, ``idempotency_key``, ``page``, ``per_page``)."""
        return self._send(_calls.OPERATION_LIST.page(query))

    def iter_operations(
        self, **filters: Unpack[_calls.OperationFilters]
    ) -> Iterator[wire.Operation]:
        return self._iterate(_calls.OPERATION_LIST.first(filters))

    def get_operation(self, operation_id: str) -> wire.Operation:
        return self._send(_calls.get_operation(operation_id)).data

    def list_delivery_attempts(
        self, **query: Unpack[_calls.DeliveryAttemptQuery]
    ) -> wire.DeliveryAttemptPage:
        """One page of attempts (``operation_id``, ``integration_id``, ``capability``,
        ``status``, ``page``, ``per_page``)."""
        return self._send(_calls.DELIVERY_ATTEMPT_LIST.page(query))

    def iter_delivery_attempts(
        self, **filters: Unpack[_calls.DeliveryAttemptFilters]
    ) -> Iterator[wire.DeliveryAttempt]:
        return self._iterate(_calls.DELIVERY_ATTEMPT_LIST.first(filters))

    def get_delivery_attempt(self, attempt_id: str) -> wire.DeliveryAttempt:
        return self._send(_calls.get_delivery_attempt(attempt_id)).data

    # -- webhooks ---------------------------------------------------------------------------

    def list_webhook_events(
        self, **query: Unpack[_calls.WebhookEventQuery]
    ) -> wire.WebhookEventPage:
        """One page of the events providers' webhooks carried, newest first
        (``integration_id``, ``type``, ``applied``, ``page``, ``per_page``)."""
        return self._send(_calls.WEBHOOK_EVENT_LIST.page(query))

    def iter_webhook_events(
        self, **filters: Unpack[_calls.WebhookEventFilters]
    ) -> Iterator[wire.WebhookEvent]:
        return self._iterate(_calls.WEBHOOK_EVENT_LIST.first(filters))

    def get_webhook_event(self, event_id: str) -> wire.WebhookEvent:
        return self._send(_calls.get_webhook_event(event_id)).data

    def get_integration_webhook(self, integration_id: str) -> wire.IntegrationWebhook:
        """Where the integration receives webhooks: the URL to give its provider."""
        return self._send(_calls.get_integration_webhook(integration_id)).data

    # -- the audit trail --------------------------------------------------------------------

    def list_audit_events(self, **query: Unpack[_calls.AuditEventQuery]) -> wire.AuditEventPage:
        """One page of the tenant's audit events, newest first (``integration_id``,
        ``action``, ``actor``, ``since``, ``until``, ``page``, ``per_page``)."""
        return self._send(_calls.AUDIT_EVENT_LIST.page(query))

    def iter_audit_events(
        self, **filters: Unpack[_calls.AuditEventFilters]
    ) -> Iterator[wire.AuditEvent]:
        return self._iterate(_calls.AUDIT_EVENT_LIST.first(filters))

    def list_integration_events(
        self, integration_id: str, **query: Unpack[_calls.IntegrationEventQuery]
    ) -> wire.AuditEventPage:
        """One page of an integration's audit events, newest first (a deleted one's too)."""
        return self._send(_calls.integration_event_list(integration_id).page(query))

    def iter_integration_events(
        self, integration_id: str, **filters: Unpack[_calls.IntegrationEventFilters]
    ) -> Iterator[wire.AuditEvent]:
        return self._iterate(_calls.integration_event_list(integration_id).first(filters))
