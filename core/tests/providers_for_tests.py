"""Small provider plugins for the core's own tests (not shipped)."""

from __future__ import annotations

from typing import Any

from relaykit import (
    CredentialField,
    Credentials,
    MessageResult,
    OperationResult,
    Provider,
    ProviderContext,
    VerificationResult,
    hookimpl,
)
from relaykit.ids import utcnow
from relaykit.lifecycle import Action, Status
from relaykit.storage import integrations as integration_rows
from relaykit.storage.database import Database


async def accept(credentials: Credentials, ctx: ProviderContext) -> VerificationResult:
    return VerificationResult.accepted()


async def send(payload: Any, credentials: Credentials, ctx: Any) -> OperationResult:
    return OperationResult.succeeded(
        MessageResult(
            provider_message_id="m1",
            provider_status="queued",
            to=payload.to,
            from_=payload.from_ or "+15550100000",
        )
    )


def make_provider(name: str = "acme", **overrides: Any) -> Provider:
    fields: dict[str, Any] = {
        "name": name,
        "display_name": name.title(),
        "category": "communication",
        "capabilities": ("send_sms",),
        "credential_schema": {
            "api_key": CredentialField(sensitive=True),
            "account": CredentialField(),
        },
        "api_base": f"https://api.{name}.example",
        "verify": accept,
        "operations": {"send_sms": send},
    }
    fields.update(overrides)
    return Provider(**fields)


class OneProvider:
    def __init__(self, *providers: Any) -> None:
        self.providers = providers

    @hookimpl
    def relaykit_providers(self) -> Any:
        return list(self.providers)


class Raising:
    @hookimpl
    def relaykit_providers(self) -> Any:
        raise RuntimeError("boom in plugin")


class Misspelled:
    @hookimpl
    def relaykit_provider(self) -> Any:  # no such hook: check_pending must catch it
        return []


async def mark_active(database: Database, integration_id: str) -> None:
    """Move a just-created integration to ``active`` as an accepted verification would."""
    assert await database.transaction(
        integration_rows.change_status,
        integration_id,
        Action.VERIFICATION_ACCEPTED,
        current=Status.PENDING_VERIFY,
        verification=None,
        now=utcnow(),
    )
