"""Key custody across real processes: two ``relaykit serve`` nodes with homes of their own
on one database, sharing key material the two ways docs/deployment.md describes; a node
that lacks the database's primary key refuses to seal; and a start without the keyring
the database needs refuses with what to restore.

The two-node tests run on the suite's PostgreSQL (``RELAYKIT_TEST_DATABASE_URL``, the
``postgres`` tox env) and on one SQLite file both processes open.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from relaykit import tenants as tenant_store
from relaykit.client import ApiError
from relaykit.keys.loading import PRIMARY_REFRESH_SECONDS
from relaykit.sealing import read_blob
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.storage.models import integrations
from relaykit.testing.standin import StandIn, stand_in

from .conftest import Server, cli_env, free_port, run_cli, start_server, stop_server
from .stripe_standin import StripeBehaviour
from .test_verification_e2e import FAST_RETRIES, wait_for

pytestmark = pytest.mark.slow

PAYMENT = {"amount": 1999, "currency": "usd"}


@pytest.fixture
def stripe() -> Iterator[StandIn]:
    with stand_in(StripeBehaviour()) as server:
        yield server


@pytest.fixture(params=["postgresql", "sqlite-file"])
def shared_database(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    """One database both nodes use: the suite's PostgreSQL database for this test, or one
    SQLite file."""
    if request.param == "postgresql":
        if not database_url.startswith("postgresql"):
            pytest.skip(
                "RELAYKIT_TEST_DATABASE_URL names no PostgreSQL server: the PostgreSQL run is "
                "the postgres tox env's (scripts/postgres start DIR prints the URL)"
            )
        return database_url
    folder = tmp_path / "shared-database"
    folder.mkdir(mode=0o700)
    return f"sqlite:///{folder / 'relaykit.sqlite3'}"


def make_tenants(env: dict[str, str], *names: str) -> list[str]:
    """Tenants and a token each, straight in the database (as ``relaykit tenants create``
    and ``tokens create`` would, without a process each): their tokens."""
    database = open_database(Settings.from_env(env))
    try:
        tokens = []
        for name in names:
            database.transaction_blocking(tenant_store.create_tenant, name)
            tokens.append(database.transaction_blocking(tenant_store.create_token, name)[1])
        return tokens
    finally:
        database.dispose()


def copy_keyring(source: Path, target: Path) -> None:
    """Copy a keyring as docs/deployment.md says: to a temporary name beside the target,
    mode 0600, then renamed into place (a reader sees the old file or the new one)."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.new")
    shutil.copyfile(source, temporary)
    os.chmod(temporary, 0o600)
    os.replace(temporary, target)


class Node:
    """One ``relaykit serve`` process with a home of its own."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.env = env
        self.log = log
        self.server: Server | None = None

    @property
    def keyring(self) -> Path:
        return Path(
            self.env.get("RELAYKIT_KEYRING") or Path(self.env["RELAYKIT_HOME"]) / "keyring.json"
        )

    def start(self) -> Node:
        self.server = start_server(self.env, self.log)
        return self

    def stop(self) -> None:
        if self.server is not None:
            stop_server(self.server)
            self.server = None

    def api(self, token: str) -> Any:
        assert self.server is not None
        return self.server.api(token)

    def raw(self, token: str | None = None) -> Any:
        assert self.server is not None
        return self.server.client(token)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), self.env, check=check)


class Cluster:
    def __init__(self, tmp_path: Path, database: str, stripe: StandIn, shared: bool) -> None:
        self.database = database
        common = {
            **FAST_RETRIES,
            "RELAYKIT_DATABASE_URL": database,
            "RELAYKIT_STRIPE_API_BASE": stripe.base_url,
        }
        if shared:  # option A: both nodes' RELAYKIT_KEYRING name one file on shared storage
            common["RELAYKIT_KEYRING"] = str(tmp_path / "shared-storage" / "keyring.json")
        self.a = Node("a", cli_env(tmp_path / "node-a", common), tmp_path / "node-a.log")
        self.b = Node("b", cli_env(tmp_path / "node-b", common), tmp_path / "node-b.log")
        self.tokens: dict[str, str] = {}
        self.integrations: dict[str, str] = {}  # tenant -> its Stripe integration
        self.engine = sa.create_engine(database)

    def tenants(self, *names: str) -> None:
        self.tokens.update(zip(names, make_tenants(self.a.env, *names), strict=True))

    def create(self, node: Node, tenant: str) -> str:
        with node.api(self.tokens[tenant]) as relay:
            made = relay.create_integration(
                "stripe",
                {"publishable_key": "pk_test_nodes", "secret_key": f"sk_test_good_{tenant}"},
                ["initiate_payment"],
            )
            wait_for(lambda: relay.get_integration(made.id).status == "active")
            relay.create_routing_rule("initiate_payment", made.id, is_default=True)
        self.integrations[tenant] = made.id
        return str(made.id)

    def key_of(self, integration_id: str) -> str:
        with self.engine.connect() as conn:
            sealed = conn.execute(
                sa.select(integrations.c.sealed_credentials).where(
                    integrations.c.id == integration_id
                )
            ).scalar_one()
        return read_blob(sealed).key_id

    def close(self) -> None:
        self.a.stop()
        self.b.stop()
        self.engine.dispose()


@pytest.fixture(params=["shared-file", "copied-file"])
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, shared_database: str, stripe: StandIn
) -> Iterator[Cluster]:
    made = Cluster(tmp_path, shared_database, stripe, shared=request.param == "shared-file")
    try:
        yield made
    finally:
        made.close()


def primary_of(node: Node) -> str:
    """The primary key as ``relaykit keys status`` on ``node`` shows it."""
    status = node.cli("keys", "status").stdout
    (line,) = [line for line in status.splitlines() if line.startswith("* ")]
    return line.split()[2]


def test_rotate_on_one_node_create_on_the_other_rewrap_and_every_integration_opens_on_both(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    cluster.tenants("t0", "t1", "t2", "t3")
    a.start()  # the first start on the empty database makes the keyring
    shared = a.keyring == b.keyring
    if not shared:  # option B: node B gets a copy of node A's keyring before it starts
        copy_keyring(a.keyring, b.keyring)
    b.start()
    first_key = primary_of(a)
    cluster.create(a, "t0")
    cluster.create(b, "t1")
    assert {cluster.key_of(i) for i in cluster.integrations.values()} == {first_key}

    if shared:
        rotated = a.cli("keys", "rotate")
        new_key = rotated.stdout.split("new primary key local ")[1].split(";")[0]
    else:
        # the sequence docs/deployment.md gives: add the key, copy, then make it primary
        new_key = a.cli("keys", "add").stdout.strip().splitlines()[-1]
        copy_keyring(a.keyring, b.keyring)
        a.cli("keys", "rotate", "--key-id", new_key)
    assert new_key != first_key
    time.sleep(PRIMARY_REFRESH_SECONDS)  # the documented bound for every node to see it
    t2 = cluster.create(b, "t2")  # node B seals under the key node A made primary
    assert cluster.key_of(t2) == new_key
    assert primary_of(b) == new_key
    assert f"* local {new_key}  primary  rows 1  in keyring" in b.cli("keys", "status").stdout

    rewrap = a.cli("keys", "rewrap")
    assert "rewrapped 2, skipped 0 (changed meanwhile), failed 0" in rewrap.stdout
    cluster.create(a, "t3")
    assert {cluster.key_of(i) for i in cluster.integrations.values()} == {new_key}

    for node in (a, b):  # every integration opens on both nodes: a payment through each
        for tenant, integration_id in cluster.integrations.items():
            with node.api(cluster.tokens[tenant]) as relay:
                paid = relay.run_operation("initiate_payment", PAYMENT)
                assert paid.status == "succeeded", (node.name, tenant, paid)
                assert paid.integration_id == integration_id
    for node in (a, b):  # and none is in error
        for tenant, integration_id in cluster.integrations.items():
            with node.api(cluster.tokens[tenant]) as relay:
                assert relay.get_integration(integration_id).status == "active"
    for node in (a, b):
        assert node.raw().get("/ready").status_code == 200
    status = a.cli("keys", "status").stdout
    assert f"* local {new_key}  primary  rows 4  in keyring" in status
    assert f"  local {first_key}  active  rows 0  in keyring" in status


def test_a_node_without_the_primary_key_cannot_seal_until_it_gets_the_keyring(
    tmp_path: Path, shared_database: str, stripe: StandIn
) -> None:
    """Option B done in the wrong order: node A rotates before node B has the new keyring.
    Node B does not seal under its old key (node A's rewrap would then race it, and other
    nodes could lack what it used): a create answers 503 key_provider_unavailable and
    writes nothing, and /ready names the key provider, until the keyring is copied."""
    cluster = Cluster(tmp_path, shared_database, stripe, shared=False)
    try:
        a, b = cluster.a, cluster.b
        cluster.tenants("t0", "t1")
        a.start()
        copy_keyring(a.keyring, b.keyring)
        b.start()
        cluster.create(b, "t0")
        new_key = a.cli("keys", "rotate").stdout.split("new primary key local ")[1].split(";")[0]
        time.sleep(PRIMARY_REFRESH_SECONDS)

        with b.raw(cluster.tokens["t1"]) as http:
            body = {
                "provider": "stripe",
                "credentials": {"publishable_key": "pk_test_1", "secret_key": "sk_test_good_t1"},
                "enabled_capabilities": ["initiate_payment"],
            }
            refused = http.post("/api/v1/integrations", json=body)
            assert refused.status_code == 503, refused.text
            assert refused.json()["success"] is False
            assert refused.json()["code"] == "key_provider_unavailable"
            assert "sk_test_good_t1" not in refused.text
            with cluster.engine.connect() as conn:
                assert (
                    conn.execute(sa.select(sa.func.count()).select_from(integrations)).scalar_one()
                    == 1
                )
            ready = b.raw().get("/ready")
            assert ready.status_code == 503
            assert ready.json()["data"]["checks"]["key_provider"]["ok"] is False
            assert (
                f"* local {new_key}  primary  rows 0  NOT in keyring"
                in b.cli("keys", "status").stdout
            )

            copy_keyring(a.keyring, b.keyring)  # the keyring reaches node B
            made = http.post("/api/v1/integrations", json=body)
            assert made.status_code == 201, made.text
            assert cluster.key_of(made.json()["data"]["id"]) == new_key
            wait_for(lambda: b.raw().get("/ready").status_code == 200)
    finally:
        cluster.close()


# -- refusing to start -----------------------------------------------------------------------


def populated(tmp_path: Path) -> dict[str, str]:
    """A home whose database holds one integration with sealed credentials."""
    env = cli_env(tmp_path / "home", {"RELAYKIT_EMBEDDED_WORKER": "0"})
    [token] = make_tenants(env, "acme")
    server = start_server(env, tmp_path / "first.log")
    try:
        with server.api(token) as relay:
            relay.create_integration(
                "stripe",
                {"publishable_key": "pk_test_1", "secret_key": "sk_test_good_refuse"},
                ["initiate_payment"],
            )
    finally:
        stop_server(server)
    return env


def relaykit(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaykit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_worker_and_keys_refuse_to_start_without_the_keyring_and_say_what_to_restore(
    tmp_path: Path,
) -> None:
    env = populated(tmp_path)
    keyring = tmp_path / "home" / "keyring.json"
    saved = tmp_path / "backup-of-keyring.json"
    shutil.move(keyring, saved)
    for args in (
        ["serve", "--port", str(free_port())],
        ["worker"],
        ["keys", "status"],
        ["keys", "rewrap"],
    ):
        result = relaykit(args, env)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert (
            "Error: the database holds 1 integration(s) with sealed credentials and needs "
            "the local key(s) "
        ) in result.stderr, args
        assert f"but there is no keyring at {keyring}. Restore the keyring" in result.stderr
        assert not keyring.exists(), args  # nothing made in its place

    os.replace(saved, keyring)  # restored from the backup: it starts
    server = start_server(env, tmp_path / "restored.log")
    stop_server(server)


def test_serve_refuses_a_keyring_others_can_read(tmp_path: Path) -> None:
    env = populated(tmp_path)
    keyring = tmp_path / "home" / "keyring.json"
    os.chmod(keyring, 0o644)
    result = relaykit(["serve", "--port", str(free_port())], env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        f"Error: the keyring {keyring} has mode 0644: others may read it. Run: chmod 600 {keyring}"
    ) in result.stderr


def test_a_deleted_integrations_secret_is_gone_from_the_database(tmp_path: Path) -> None:
    """DELETE through the API erases the sealed credentials at once (the row stays, for
    history and the audit trail), and rewrap and ``keys status`` count live rows only."""
    env = cli_env(tmp_path / "home", {"RELAYKIT_EMBEDDED_WORKER": "0"})
    tokens = make_tenants(env, *(f"t{number}" for number in range(5)))
    server = start_server(env, tmp_path / "server.log")
    made = []
    try:
        for token in tokens:
            with server.api(token) as relay:
                made.append(
                    relay.create_integration(
                        "stripe",
                        {"publishable_key": "pk_test_1", "secret_key": "sk_test_good_del"},
                        ["initiate_payment"],
                    ).id
                )
        for token, integration_id in list(zip(tokens, made, strict=True))[:3]:
            with server.api(token) as relay:
                relay.delete_integration(integration_id)
                with pytest.raises(ApiError):
                    relay.get_integration(integration_id)
                events = relay.list_integration_events(integration_id)
                assert events.data[0].action == "integration.deleted"  # newest first
    finally:
        stop_server(server)
    engine = sa.create_engine(env["RELAYKIT_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = {
                row.id: row
                for row in conn.execute(
                    sa.select(
                        integrations.c.id,
                        integrations.c.sealed_credentials,
                        integrations.c.deleted_at,
                    )
                )
            }
    finally:
        engine.dispose()
    assert [(rows[i].sealed_credentials, rows[i].deleted_at is not None) for i in made[:3]] == [
        (None, True)
    ] * 3
    assert all(rows[i].sealed_credentials is not None for i in made[3:])
    status = run_cli(["keys", "status"], env).stdout
    assert "rows 2" in status
    run_cli(["keys", "rotate"], env)
    rewrap = run_cli(["keys", "rewrap"], env)
    assert "rewrapped 2, skipped 0 (changed meanwhile), failed 0" in rewrap.stdout
