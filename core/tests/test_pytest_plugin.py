"""The fixtures relaykit's pytest plugin gives provider authors (loaded by entry point)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from relaykit import VerificationOutcome, VerificationResult
from relaykit.testing import run_verification
from relaykit.testing.pytest_plugin import FakeProviderApi

from .providers_for_tests import OneProvider, make_provider


def test_fake_provider_api_routes_and_records(fake_provider_api: FakeProviderApi) -> None:
    async def verify(credentials: Any, ctx: Any) -> Any:
        response = await ctx.http.get("/v1/me")
        return (
            VerificationResult.accepted()
            if response.status_code == 200
            else VerificationResult.rejected("no")
        )

    fake_provider_api.route("GET", "/v1/me", httpx.Response(200, json={"id": "me"}))
    result = run_verification(
        make_provider(verify=verify), {"api_key": "k-123456"}, handler=fake_provider_api.handler
    )
    assert result.outcome is VerificationOutcome.ACCEPTED
    assert [r.url.path for r in fake_provider_api.requests] == ["/v1/me"]
    missing = fake_provider_api.handler(httpx.Request("POST", "https://x/v1/other"))
    assert missing.status_code == 404


def test_relaykit_plugin_manager_registers_plugins(
    relaykit_plugin_manager: Callable[..., Any],
) -> None:
    pm = relaykit_plugin_manager(OneProvider(make_provider("zed")))
    assert pm.catalog().names == ("zed",)
