"""Integrations over real HTTP against the real server process, with the real plugins."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from relaykit.client import InvalidRequest
from relaykit.testing.databases import stored_text

from .conftest import Recorder, cli_env, run_cli, start_server, stop_server

CANARY_SECRET = "sk_test_CANARY_5e0c7a1f9b3d"
CANARY_WEBHOOK = "whsec_CANARY_77aa55cc33ee"
CANARY_ROTATED = "sk_test_CANARY_ROTATED_0bb1"


def tenant_token(home: Path, name: str = "acme") -> str:
    env = cli_env(home)
    run_cli(["tenants", "create", name], env)
    return run_cli(["tokens", "create", "--tenant", name], env).stdout.strip().splitlines()[-1]


def stripe_body() -> dict[str, Any]:
    return {
        "provider": "stripe",
        "credentials": {
            "publishable_key": "pk_test_placeholder",
            "secret_key": CANARY_SECRET,
            "webhook_secret": CANARY_WEBHOOK,
        },
        "enabled_capabilities": ["initiate_payment", "process_refund", "verify_payment"],
        "metadata": {"environment": "production"},
    }


def test_a_canary_secret_never_leaves_its_sealed_form(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    token = tenant_token(home)
    log = tmp_path / "server.log"
    server = start_server(cli_env(home, {"RELAYKIT_LOG_LEVEL": "DEBUG"}), log)
    # raw: every answer as it came over the wire (bytes, status): the canary must be in none
    wire = Recorder()
    try:
        with server.api(token, transport=wire) as relay:
            created = relay.create_integration(**stripe_body())
            relay.update_integration(created.id, credentials={"secret_key": CANARY_ROTATED})
            # failing requests that carry the canary must not echo it either
            with pytest.raises(InvalidRequest):
                relay.create_integration(
                    **{**stripe_body(), "credentials": {"secret_key": 5, "x": CANARY_SECRET}}
                )
            relay.get_integration(created.id)
            relay.list_integrations()
    finally:
        stop_server(server)
    assert [response.status_code for response in wire.responses] == [201, 200, 422, 200, 200]
    seen = [response.text for response in wire.responses]
    server_log = log.read_text()
    assert "DEBUG relaykit.sealing: sealed 2 credential fields" in server_log  # really at debug
    assert "INFO relaykit.integrations: integration" in server_log
    assert "Logging error" not in server_log  # every formatter copes with the redacted records
    # relaykit's access line (uvicorn's own access log is off: it has no request id)
    assert "INFO relaykit.access: POST /api/v1/integrations 201" in server_log
    for canary in (CANARY_SECRET, CANARY_WEBHOOK, CANARY_ROTATED):
        for text in seen:
            assert canary not in text
        assert canary not in server_log
        for path in home.rglob("*"):
            if path.is_file():
                assert canary.encode() not in path.read_bytes(), f"{canary} in {path}"
        assert canary.encode() not in stored_text(database_url)


def test_fifty_concurrent_creates_over_http_give_exactly_one(server, home: Path) -> None:  # type: ignore[no-untyped-def]
    token = tenant_token(home)

    def create(_: int) -> InvalidRequest | None:
        """None when this one was created; the 422 when it was refused."""
        with server.api(token, timeout=60) as relay:
            try:
                relay.create_integration(**stripe_body())
            except InvalidRequest as refused:
                return refused
        return None

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(create, range(50)))
    assert outcomes.count(None) == 1
    assert [refused.errors for refused in outcomes if refused is not None] == [
        {"provider": ["An integration for this provider already exists."]}
    ] * 49
    with server.api(token) as relay:
        assert relay.list_integrations().meta.total == 1
