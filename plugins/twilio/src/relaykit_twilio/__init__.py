"""The Twilio provider for relaykit (entry point ``relaykit: twilio``)."""

from __future__ import annotations

from collections.abc import Iterator

import relaykit
from relaykit import E164_PATTERN, CredentialField, Provider, capabilities, hookimpl
from relaykit_twilio.operations import send_sms, send_whatsapp
from relaykit_twilio.verifier import verify
from relaykit_twilio.webhooks import SCHEME as WEBHOOKS

API_BASE = "https://api.twilio.com"

PROVIDER = Provider(
    name="twilio",
    display_name="Twilio",
    category="communication",
    capabilities=(capabilities.SEND_SMS, capabilities.SEND_WHATSAPP),
    credential_schema={
        # No ^AC[0-9a-f]{32}$ pattern on purpose: the API contract's own example sends
        # "account_sid_placeholder", and Twilio itself is the judge of a SID.
        "account_sid": CredentialField(
            description="Account SID (AC…), the user name of Twilio's HTTP Basic auth",
            max_length=64,
            pattern=relaykit.HEADER_SAFE_PATTERN,  # sent in the Authorization header
        ),
        "auth_token": CredentialField(
            sensitive=True,
            description="Auth token of the account, the password of Twilio's HTTP Basic auth",
            max_length=255,
            pattern=relaykit.HEADER_SAFE_PATTERN,  # sent in the Authorization header
        ),
        # A plain E.164 number; send_whatsapp adds Twilio's "whatsapp:" prefix itself.
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
    """Declare the Twilio provider.

    Yields:
        The one :class:`relaykit.Provider` record this plugin ships.
    """
    yield PROVIDER
