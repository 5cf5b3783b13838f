"""relaykit's pytest plugin (entry point ``pytest11: relaykit``): fixtures for provider tests.

* ``relaykit_plugin_manager``: make a plugin manager with the given plugins registered
  in-process (no entry points), as relaykit would load them;
* ``fake_provider_api``: a fake of a provider's HTTP API at the transport: routes by method
  and path, records every request; pass ``fake_provider_api.handler`` wherever an
  ``httpx.MockTransport`` handler goes (``run_verification``, ``run_handler``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from relaykit.plugins import RelaykitPluginManager, make_plugin_manager

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class FakeProviderApi:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Answer] = {}
        self.requests: list[httpx.Request] = []

    def route(self, method: str, path: str, answer: Answer) -> None:
        """Answer ``method path`` with a response, or with what ``answer(request)`` returns."""
        self.routes[(method.upper(), path)] = answer

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(
                404, json={"error": f"no route for {request.method} {request.url.path}"}
            )
        return answer(request) if callable(answer) else answer


@pytest.fixture
def fake_provider_api() -> FakeProviderApi:
    return FakeProviderApi()


@pytest.fixture
def relaykit_plugin_manager() -> Callable[..., RelaykitPluginManager]:
    def make(*plugins: Any) -> RelaykitPluginManager:
        named = [(getattr(p, "__name__", type(p).__name__), p) for p in plugins]
        return make_plugin_manager(load_entrypoints=False, plugins=named)

    return make
