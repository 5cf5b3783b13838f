"""The built-in providers arrive through entry points and show in the contract's shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaykit.client import Unauthenticated
from relaykit.errors import ValidationError
from relaykit.plugins import make_plugin_manager
from relaykit.validation import validate_create

from .conftest import Server, cli_env, run_cli

# The contract's example entries (shared/spec/managing-integrations.md, "List Available
# Providers"), with is_configured false for a new tenant.
CONTRACT_STRIPE = {
    "name": "stripe",
    "display_name": "Stripe",
    "category": "payment",
    "capabilities": ["initiate_payment", "process_refund", "verify_payment"],
    "credential_schema": {
        "publishable_key": {"type": "string", "sensitive": False, "required": True},
        "secret_key": {"type": "string", "sensitive": True, "required": True},
        "webhook_secret": {"type": "string", "sensitive": True, "required": False},
    },
    "is_configured": False,
}
CONTRACT_TWILIO = {
    "name": "twilio",
    "display_name": "Twilio",
    "category": "communication",
    "capabilities": ["send_sms", "send_whatsapp"],
    "credential_schema": {
        "account_sid": {"type": "string", "sensitive": False, "required": True},
        "auth_token": {"type": "string", "sensitive": True, "required": True},
        "from_number": {"type": "string", "sensitive": False, "required": True},
    },
    "is_configured": False,
}
PLIVO = {
    "name": "plivo",
    "display_name": "Plivo",
    "category": "communication",
    "capabilities": ["send_sms", "send_whatsapp"],
    "credential_schema": {
        "auth_id": {"type": "string", "sensitive": False, "required": True},
        "auth_token": {"type": "string", "sensitive": True, "required": True},
        "from_number": {"type": "string", "sensitive": False, "required": True},
    },
    "is_configured": False,
}


def test_cli_lists_the_three_providers_from_their_distributions(home: Path) -> None:
    result = run_cli(["providers", "--check", "--json"], cli_env(home))
    catalog = json.loads(result.stdout)
    assert {p["name"]: p["distribution"] for p in catalog["providers"]} == {
        "plivo": "relaykit-plivo",
        "stripe": "relaykit-stripe",
        "twilio": "relaykit-twilio",
    }
    assert catalog["errors"] == []


def test_curl_walk_lists_providers_in_the_contract_shape(server: Server, home: Path) -> None:
    env = cli_env(home)
    run_cli(["tenants", "create", "acme"], env)
    token = run_cli(["tokens", "create", "--tenant", "acme"], env).stdout.strip().splitlines()[-1]
    # raw: the contract's exact envelope (success, message, meta) and JSON shape, which
    # relaykit.client decodes away
    with server.client(token) as client:
        response = client.get("/api/v1/integrations/providers")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "Providers retrieved successfully"
    assert body["meta"] == {}
    assert body["data"] == [PLIVO, CONTRACT_STRIPE, CONTRACT_TWILIO]

    with server.api("rk_not_a_token") as stranger, pytest.raises(Unauthenticated) as refused:
        stranger.list_providers()
    assert refused.value.status_code == 401
    assert refused.value.body["success"] is False


HEADER_BORNE = [
    ("stripe", "secret_key", {"publishable_key": "pk_test_1", "secret_key": "sk_test_ok"}),
    (
        "twilio",
        "account_sid",
        {"account_sid": "AC1", "auth_token": "tok", "from_number": "+15550100000"},
    ),
    (
        "twilio",
        "auth_token",
        {"account_sid": "AC1", "auth_token": "tok", "from_number": "+15550100000"},
    ),
    ("plivo", "auth_id", {"auth_id": "MA1", "auth_token": "tok", "from_number": "+15550100000"}),
    ("plivo", "auth_token", {"auth_id": "MA1", "auth_token": "tok", "from_number": "+15550100000"}),
]


@pytest.mark.parametrize(("provider", "field", "credentials"), HEADER_BORNE)
@pytest.mark.parametrize("bad", ["é", "\u00a0", "\u2603", "\x7f"])
def test_a_credential_no_http_header_can_carry_is_refused_at_once(
    provider: str, field: str, credentials: dict[str, str], bad: str
) -> None:
    """A value sent in the Authorization header must be printable ASCII: anything else could
    never reach the provider, so it is a 422 now rather than a check retried for minutes."""
    catalog = make_plugin_manager(environ={}).catalog()
    good = {"provider": provider, "credentials": credentials, "enabled_capabilities": []}
    validate_create(good, catalog)  # the same body with ASCII values is taken
    value = credentials[field] + bad + "x"
    body = {**good, "credentials": {**credentials, field: value}}
    with pytest.raises(ValidationError) as info:
        validate_create(body, catalog)
    assert list(info.value.errors) == [f"credentials.{field}"]
    assert value not in str(info.value.errors)  # never repeats a submitted value
