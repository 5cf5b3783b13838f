"""The live server the fuzz tests hold to its OpenAPI document.

One real ``relaykit serve`` process for the session (every distribution installed, the three
built-in providers from their entry points, SQLite in a temporary folder), with the
providers' APIs answered by the local stand-ins, and one tenant token per test that writes,
so the fuzzing and the lifecycle runs do not collide on "an integration for this provider
already exists".

Run by the tox env ``fuzz``: the ``integration`` env passes ``--ignore=tests/fuzz``, and an
env without schemathesis (``postgres`` collects all of ``tests``) does not collect this folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest

from relaykit.testing.standin import stand_in

from ..conftest import cli_env, run_cli, start_server, stop_server
from ..messaging_standin import Messaging
from ..stripe_standin import StripeBehaviour

if find_spec("schemathesis") is None:
    collect_ignore_glob = ["test_*.py"]

TENANTS = ("fuzz", "unauth", "lifecycle", "stateful")

# Verification retries quickly, so the lifecycle test sees "active" within a second or two.
FAST_VERIFICATION = {
    "RELAYKIT_VERIFY_TIMEOUT": "1",
    "RELAYKIT_VERIFY_LEASE": "3",
    "RELAYKIT_VERIFY_BACKOFF_BASE": "0.05",
    "RELAYKIT_VERIFY_BACKOFF_MAX": "0.2",
    "RELAYKIT_WORKER_POLL": "0.2",
}


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    tokens: dict[str, str]
    log: Path

    @property
    def schema_url(self) -> str:
        return f"{self.base_url}/schema/openapi.json"

    def auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[tenant]}"}


@pytest.fixture(scope="session")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    folder = tmp_path_factory.mktemp("live-api")
    home = folder / "home"
    with stand_in(StripeBehaviour()) as stripe, stand_in(Messaging()) as messaging:
        env = cli_env(
            home,
            {
                # Set here: the autouse per-test ``database_url`` fixture is not active yet
                # when a session fixture is built.
                "RELAYKIT_DATABASE_URL": f"sqlite:///{folder / 'relaykit.sqlite3'}",
                "RELAYKIT_STRIPE_API_BASE": stripe.base_url,
                "RELAYKIT_TWILIO_API_BASE": messaging.base_url,
                "RELAYKIT_PLIVO_API_BASE": messaging.base_url,
                **FAST_VERIFICATION,
            },
        )
        tokens = {}
        for tenant in TENANTS:
            run_cli(["tenants", "create", tenant], env)
            created = run_cli(["tokens", "create", "--tenant", tenant], env)
            tokens[tenant] = created.stdout.strip().splitlines()[-1]
        log = folder / "server.log"
        server = start_server(env, log)
        try:
            yield LiveApi(server.base_url, tokens, log)
        finally:
            stop_server(server)
