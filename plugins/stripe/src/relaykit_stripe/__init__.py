"""The Stripe provider for relaykit (entry point ``relaykit: stripe``)."""

from __future__ import annotations

from collections.abc import Iterator

from relaykit import CredentialField, Provider, capabilities, hookimpl
from relaykit_stripe.operations import initiate_payment, process_refund, verify_payment
from relaykit_stripe.verifier import verify
from relaykit_stripe.webhooks import SCHEME as WEBHOOKS

API_BASE = "https://api.stripe.com"

PROVIDER = Provider(
    name="stripe",
    display_name="Stripe",
    category="payment",
    capabilities=(
        capabilities.INITIATE_PAYMENT,
        capabilities.PROCESS_REFUND,
        capabilities.VERIFY_PAYMENT,
    ),
    credential_schema={
        "publishable_key": CredentialField(
            description="Publishable key (pk_test_… or pk_live_…)", pattern=r"^pk_", max_length=255
        ),
        "secret_key": CredentialField(
            sensitive=True,
            description="Secret or restricted key (sk_… or rk_…)",
            # Sent as a bearer token: printable ASCII only (relaykit.HEADER_SAFE_PATTERN).
            pattern=r"^(sk|rk)_[\x21-\x7e]+$",
            max_length=255,
        ),
        "webhook_secret": CredentialField(
            sensitive=True,
            required=False,
            description="Signing secret of a webhook endpoint (whsec_…)",
            pattern=r"^whsec_[\x21-\x7e]+$",
            max_length=255,
        ),
    },
    api_base=API_BASE,
    verify=verify,
    operations={
        capabilities.INITIATE_PAYMENT: initiate_payment,
        capabilities.PROCESS_REFUND: process_refund,
        capabilities.VERIFY_PAYMENT: verify_payment,
    },
    webhooks=WEBHOOKS,
)


@hookimpl
def relaykit_providers() -> Iterator[Provider]:
    yield PROVIDER
