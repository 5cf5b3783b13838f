"""Rotating the key-encryption key and rewrapping every row while the API takes traffic."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

from relaykit import tenants as tenant_store
from relaykit.client import ApiError
from relaykit.keys import key_usage, local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import SealContext, open_credentials
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.storage.models import integrations

from .conftest import cli_env, run_cli, start_server, stop_server

pytestmark = pytest.mark.slow


def test_rotate_and_rewrap_under_traffic(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", {"RELAYKIT_EMBEDDED_WORKER": "0"})
    settings = Settings.from_env(env)
    database = open_database(settings)
    tokens = []
    for number in range(40):
        database.transaction_blocking(tenant_store.create_tenant, f"tenant-{number}")
        tokens.append(
            database.transaction_blocking(tenant_store.create_token, f"tenant-{number}")[1]
        )
    server = start_server(env, tmp_path / "server.log")
    outcomes: Counter[str] = Counter()  # "ok", or the ApiError a request raised
    secrets: dict[str, str] = {}  # integration id -> its current secret_key
    lock = threading.Lock()
    stop = threading.Event()

    def traffic(worker: int) -> None:
        mine = tokens[worker::4]
        created: dict[str, str] = {}
        round_ = 0
        while not stop.is_set():
            for token in mine:
                with server.api(token) as relay:
                    secret = f"sk_test_w{worker}_{round_}_{token[-6:]}"
                    try:
                        if token not in created:
                            created[token] = relay.create_integration(
                                "stripe",
                                {"publishable_key": "pk_test_1", "secret_key": secret},
                                ["initiate_payment"],
                            ).id
                        else:
                            relay.update_integration(
                                created[token], credentials={"secret_key": secret}
                            )
                    except ApiError as failed:
                        outcome = str(failed)
                    else:
                        outcome = "ok"
                    with lock:
                        outcomes[outcome] += 1
                        if outcome == "ok":
                            secrets[created[token]] = secret
                    try:
                        relay.list_integrations()
                    except ApiError as failed:
                        outcome = str(failed)
                    else:
                        outcome = "ok"
                    with lock:
                        outcomes[outcome] += 1
            round_ += 1

    threads = [threading.Thread(target=traffic, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        keyring = local_key_set(settings, database)
        old_key = keyring.primary_key_id
        run_cli(["keys", "rotate"], env)
        time.sleep(0.5)
        rewrap = run_cli(["keys", "rewrap", "--batch-size", "7"], env)
        assert "failed 0" in rewrap.stdout
        time.sleep(1.0)  # traffic goes on after the rewrap
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        stop_server(server)

    assert set(outcomes) <= {"ok"}, outcomes  # 0 failed requests
    assert sum(outcomes.values()) > 100
    keyring = local_key_set(settings, database)  # as it is now: the rotated primary
    assert keyring.primary_key_id != old_key
    usage = anyio.run(key_usage, database)
    assert usage[("local", old_key)] == 0, usage  # 0 rows left on the old key
    assert set(usage) == {("local", keyring.primary_key_id)}
    catalog = make_plugin_manager(environ={}).catalog()
    assert "stripe" in catalog
    rows = database.read_blocking(lambda conn: conn.execute(integrations.select()).all())
    assert len(rows) == 40
    for row in rows:  # every integration still opens, with its latest secret
        opened = open_credentials(
            row.sealed_credentials, SealContext(row.tenant_id, row.id, row.provider), keyring
        )
        assert opened == {"secret_key": secrets[row.id]}
    database.dispose()
