"""The asynchronous client, over ``httpx.AsyncClient`` (asyncio or trio, through anyio)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, TypeVar, Unpack

import anyio
import httpx
import msgspec

from relaykit import wire
from relaykit.client import _calls
from relaykit.client._calls import Call, ClientBase, Paged

E = TypeVar("E")
T = TypeVar("T")


class AsyncClient(ClientBase[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """:class:`~relaykit.client.Client` for async code: the same arguments, methods and
    retry rule; each method is a coroutine, and each ``iter_*`` an async iterator::

        async with AsyncClient("http://127.0.0.1:8000", token) as relay:
            async for integration in relay.iter_integrations(status="active"):
                ...
    """

    def _open(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(**options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[E]) -> E:
        retries_done = 0
        while True:
            try:
                response = await self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                if not call.should_retry(exc, retries_done, self._retries):
                    raise
                await anyio.sleep(_calls.backoff(retries_done))
                retries_done += 1
                continue
            return call.answer(response)

    async def _iterate(self, call: Call[Paged[T]]) -> AsyncIterator[T]:
        next_call: Call[Paged[T]] | None = call
        while next_call is not None:
            page = await self._send(next_call)
            for item in page.data:
                yield item
            next_call = next_call.following(page)

    # -- providers and integrations ---------------------------------------------------------

    async def list_providers(self) -> list[wire.ProviderSummary]:
        return (await self._send(_calls.list_providers())).data

    async def list_integrations(
        self, **query: Unpack[_calls.IntegrationQuery]
    ) -> wire.IntegrationPage:
        return await self._send(_calls.INTEGRATION_LIST.page(query))

    def iter_integrations(
        self, **filters: Unpack[_calls.IntegrationFilters]
    ) -> AsyncIterator[wire.Integration]:
        return self._iterate(_calls.INTEGRATION_LIST.first(filters))

    async def get_integration(self, integration_id: str) -> wire.Integration:
        return (await self._send(_calls.get_integration(integration_id))).data

    async def create_integration(
        self,
        provider: str,
        credentials: dict[str, Any],
        enabled_capabilities: list[str],
        *,
        metadata: dict[str, Any] | wire.UnsetType | None = wire.UNSET,
    ) -> wire.Integration:
        call = _calls.create_integration(provider, credentials, enabled_capabilities, metadata)
        return (await self._send(call)).data

    async def update_integration(
        self, integration_id: str, **changes: Unpack[_calls.IntegrationChanges]
    ) -> wire.Integration:
        return (await self._send(_calls.update_integration(integration_id, changes))).data

    async def delete_integration(self, integration_id: str) -> None:
        await self._send(_calls.delete_integration(integration_id))

    async def activate_integration(self, integration_id: str) -> wire.Integration:
        return (await self._send(_calls.transition_integration(integration_id, "activate"))).data

    async def disable_integration(self, integration_id: str) -> wire.Integration:
        return (await self._send(_calls.transition_integration(integration_id, "disable"))).data

    # -- routing rules ----------------------------------------------------------------------

    async def list_routing_rules(
        self, **query: Unpack[_calls.RoutingRuleQuery]
    ) -> wire.RoutingRulePage:
        return await self._send(_calls.ROUTING_RULE_LIST.page(query))

    def iter_routing_rules(
        self, **filters: Unpack[_calls.RoutingRuleFilters]
    ) -> AsyncIterator[wire.RoutingRule]:
        return self._iterate(_calls.ROUTING_RULE_LIST.first(filters))

    async def get_routing_rule(self, rule_id: str) -> wire.RoutingRule:
        return (await self._send(_calls.get_routing_rule(rule_id))).data

    async def create_routing_rule(
        self, capability: str, integration_id: str, **options: Unpack[_calls.RoutingRuleOptions]
    ) -> wire.RoutingRule:
        call = _calls.create_routing_rule(capability, integration_id, options)
        return (await self._send(call)).data

    async def update_routing_rule(
        self, rule_id: str, **changes: Unpack[_calls.RoutingRuleChanges]
    ) -> wire.RoutingRule:
        return (await self._send(_calls.update_routing_rule(rule_id, changes))).data

    async def delete_routing_rule(self, rule_id: str) -> None:
        await self._send(_calls.delete_routing_rule(rule_id))

    # -- operations and delivery attempts ---------------------------------------------------

    async def run_operation(
        self,
        capability: str,
        input: Mapping[str, Any] | msgspec.Struct,
        *,
        idempotency_key: str | None = None,
    ) -> wire.Operation:
        call = _calls.run_operation(capability, input, idempotency_key)
        return (await self._send(call)).data

    async def list_operations(self, **query: Unpack[_calls.OperationQuery]) -> wire.OperationPage:
        return await self._send(_calls.OPERATION_LIST.page(query))

    def iter_operations(
        self, **filters: Unpack[_calls.OperationFilters]
    ) -> AsyncIterator[wire.Operation]:
        return self._iterate(_calls.OPERATION_LIST.first(filters))

    async def get_operation(self, operation_id: str) -> wire.Operation:
        return (await self._send(_calls.get_operation(operation_id))).data

    async def list_delivery_attempts(
        self, **query: Unpack[_calls.DeliveryAttemptQuery]
    ) -> wire.DeliveryAttemptPage:
        return await self._send(_calls.DELIVERY_ATTEMPT_LIST.page(query))

    def iter_delivery_attempts(
        self, **filters: Unpack[_calls.DeliveryAttemptFilters]
    ) -> AsyncIterator[wire.DeliveryAttempt]:
        return self._iterate(_calls.DELIVERY_ATTEMPT_LIST.first(filters))

    async def get_delivery_attempt(self, attempt_id: str) -> wire.DeliveryAttempt:
        return (await self._send(_calls.get_delivery_attempt(attempt_id))).data

    # -- webhooks ---------------------------------------------------------------------------

    async def list_webhook_events(
        self, **query: Unpack[_calls.WebhookEventQuery]
    ) -> wire.WebhookEventPage:
        return await self._send(_calls.WEBHOOK_EVENT_LIST.page(query))

    def iter_webhook_events(
        self, **filters: Unpack[_calls.WebhookEventFilters]
    ) -> AsyncIterator[wire.WebhookEvent]:
        return self._iterate(_calls.WEBHOOK_EVENT_LIST.first(filters))

    async def get_webhook_event(self, event_id: str) -> wire.WebhookEvent:
        return (await self._send(_calls.get_webhook_event(event_id))).data

    async def get_integration_webhook(self, integration_id: str) -> wire.IntegrationWebhook:
        return (await self._send(_calls.get_integration_webhook(integration_id))).data

    # -- the audit trail --------------------------------------------------------------------

    async def list_audit_events(
        self, **query: Unpack[_calls.AuditEventQuery]
    ) -> wire.AuditEventPage:
        return await self._send(_calls.AUDIT_EVENT_LIST.page(query))

    def iter_audit_events(
        self, **filters: Unpack[_calls.AuditEventFilters]
    ) -> AsyncIterator[wire.AuditEvent]:
        return self._iterate(_calls.AUDIT_EVENT_LIST.first(filters))

    async def list_integration_events(
        self, integration_id: str, **query: Unpack[_calls.IntegrationEventQuery]
    ) -> wire.AuditEventPage:
        return await self._send(_calls.integration_event_list(integration_id).page(query))

    def iter_integration_events(
        self, integration_id: str, **filters: Unpack[_calls.IntegrationEventFilters]
    ) -> AsyncIterator[wire.AuditEvent]:
        return self._iterate(_calls.integration_event_list(integration_id).first(filters))
