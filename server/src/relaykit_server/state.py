"""The core services the app uses for its lifetime, made in the lifespan, kept on ``app.state``."""

from __future__ import annotations

from typing import Any

from litestar import Litestar

from relaykit.services import Services


def services_of(app: Litestar | Any) -> Services:
    services = app.state.get("services")
    if not isinstance(services, Services):  # only before the lifespan ran
        raise RuntimeError("relaykit app used before its lifespan started")
    return services
