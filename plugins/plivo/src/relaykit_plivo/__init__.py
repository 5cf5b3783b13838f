"""The Plivo provider for relaykit (entry point ``relaykit: plivo``)."""

from __future__ import annotations

from collections.abc import Iterator

import relaykit
from relaykit import E164_PATTERN, CredentialField, Provider, capabilities, hookimpl
from relaykit_plivo.operations import send_sms, send_whatsapp
from relaykit_plivo.verifier import verify
from relaykit_plivo.webhooks import SCHEME as WEBHOOKS

API_BASE = "https://api.plivo.com"

PROVIDER = Provider(
    name="plivo",
    display_name="Plivo",
    category="communication",
    capabilities=(capabilities.SEND_SMS, capabilities.SEND_WHATSAPP),
    credential_schema={
        # No MA…/SA… pattern: as with Twilio's SID, Plivo is the judge of an Auth ID, and a
        # strict pattern here would turn Plivo's clear rejection into a bare format error.
        "auth_id": CredentialField(
            description="Auth ID (MA… or SA… for a subaccount), the user name of Plivo's "
            "HTTP Basic auth",
            max_length=64,
            pattern=relaykit.HEADER_SAFE_PATTERN,  # sent in the Authorization header
        ),
        "auth_token": CredentialField(
            sensitive=True,
            description="Auth Token, the password of Plivo's HTTP Basic auth",
            max_length=255,
            pattern=relaykit.HEADER_SAFE_PATTERN,  # sent in the Authorization header
        ),
        "from_number": CredentialField(
            description="Sender number in E.164 (+15550100000)",
            pattern=E164_PATTERN,
            max_length=16,
        ),
    },
    api_base=API_BASE,
    verify=verify,
    operations={capabilities.SEND_SMS: send_sms, capabilities.SEND_WHATSAPP: send_whatsapp},
    webhooks=WEBHOOKS,
)


@hookimpl
def relaykit_providers() -> Iterator[Provider]:
    """Declare the Plivo provider.

    Yields:
        The one :class:`relaykit.Provider` record this plugin ships.
    """
    yield PROVIDER
