"""Integrations over real HTTP against the real server process, with the real plugins."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from relaykit.testing.databases import stored_text

from .conftest import cli_env, run_cli, start_server, stop_server

CANARY_SECRET = "sk_test_CANARY_5e0c7a1f9b3d"
CANARY_WEBHOOK = "whsec_CANARY_77aa55cc33ee"
CANARY_ROTATED = "sk_test_CANARY_ROTATED_0bb1"


def tenant_token(home: Path, name: str = "acme") -> str:
    env = cli_env(home)
    run_cli(["tenants", "create", name], env)
    return run_cli(["tokens", "create", "--tenant", name], env).stdout.strip().splitlines()[-1]


def stripe_body() -> dict[str, object]:
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
    seen: list[str] = []
    try:
        with server.client(token) as client:
            created = client.post("/api/v1/integrations", json=stripe_body())
            assert created.status_code == 201
            integration_id = created.json()["data"]["id"]
            seen.append(created.text)
            patched = client.patch(
                f"/api/v1/integrations/{integration_id}",
                json={"credentials": {"secret_key": CANARY_ROTATED}},
            )
            assert patched.status_code == 200
            seen.append(patched.text)
            # failing requests that carry the canary must not echo it either
            bad = client.post(
                "/api/v1/integrations",
                json={**stripe_body(), "credentials": {"secret_key": 5, "x": CANARY_SECRET}},
            )
            assert bad.status_code == 422
            seen.append(bad.text)
            seen.append(client.get(f"/api/v1/integrations/{integration_id}").text)
            seen.append(client.get("/api/v1/integrations").text)
    finally:
        stop_server(server)
    server_log = log.read_text()
    assert "DEBUG relaykit.sealing: sealed 2 credential fields" in server_log  # really at debug
    assert "INFO relaykit.integrations: integration" in server_log
    assert "Logging error" not in server_log  # every formatter copes with the redacted records
    assert '"POST /api/v1/integrations HTTP/1.1" 201' in server_log  # uvicorn's access log
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

    def create(_: int) -> int:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            response = client.post(
                "/api/v1/integrations",
                json=stripe_body(),
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code == 422:
                assert response.json()["errors"] == {
                    "provider": ["An integration for this provider already exists."]
                }
            return response.status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = sorted(pool.map(create, range(50)))
    assert statuses == [201] + [422] * 49
    with server.client(token) as client:
        assert client.get("/api/v1/integrations").json()["meta"]["total"] == 1
