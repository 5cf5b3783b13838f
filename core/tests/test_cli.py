"""The core's command line, driven through click with a real database and plugin manager."""

from __future__ import annotations

import json

import anyio
import click
from click.testing import CliRunner

from relaykit import hookimpl
from relaykit import tenants as store
from relaykit.cli import CliState, build_cli
from relaykit.plugins import make_plugin_manager
from relaykit.settings import Settings
from relaykit.storage.database import open_database

from .providers_for_tests import OneProvider, Raising, make_provider


def run(settings: Settings, args: list[str], plugins: list[tuple[str, object]] | None = None):  # type: ignore[no-untyped-def]
    pm = make_plugin_manager(load_entrypoints=False, plugins=plugins or [])
    return CliRunner().invoke(
        build_cli(pm), args, obj=CliState(settings, pm), catch_exceptions=False
    )


def test_tenant_and_token_lifecycle(settings: Settings) -> None:
    created = run(settings, ["tenants", "create", "acme"])
    assert created.exit_code == 0, created.output
    tenant_id = created.stdout.strip().splitlines()[-1]
    assert len(tenant_id) == 26

    made = run(settings, ["tokens", "create", "--tenant", "acme", "--label", "ops"])
    assert made.exit_code == 0
    token = made.stdout.strip().splitlines()[-1]  # the contract: the token is the last line
    database = open_database(settings)
    caller = anyio.run(store.authenticate, database, token)
    assert caller is not None and caller.tenant_id == tenant_id

    listed = run(settings, ["tokens", "list", "--tenant", "acme"])
    assert "active" in listed.stdout and "ops" in listed.stdout

    token_id = token.split("_")[1]
    revoked = run(settings, ["tokens", "revoke", token_id])
    assert revoked.exit_code == 0 and token_id in revoked.stdout
    assert anyio.run(store.authenticate, database, token) is None
    assert "revoked" in run(settings, ["tokens", "list", "--tenant", "acme"]).stdout
    assert "acme" in run(settings, ["tenants", "list"]).stdout
    database.dispose()


def test_errors_are_one_line_and_exit_nonzero(settings: Settings) -> None:
    assert run(settings, ["tenants", "create", "acme"]).exit_code == 0
    again = run(settings, ["tenants", "create", "acme"])
    assert again.exit_code == 1 and "already exists" in again.output
    ghost = run(settings, ["tokens", "create", "--tenant", "ghost"])
    assert ghost.exit_code == 1 and "no tenant named 'ghost'" in ghost.output
    assert "Traceback" not in ghost.output


def test_providers_lists_and_checks(settings: Settings) -> None:
    ok = run(settings, ["providers", "--check"], [("acme", OneProvider(make_provider()))])
    assert ok.exit_code == 0
    assert ok.stdout.split()[0] == "acme"
    assert "no plugin errors" in ok.stderr

    as_json = run(settings, ["providers", "--json"], [("acme", OneProvider(make_provider()))])
    data = json.loads(as_json.stdout)
    assert data["providers"][0]["name"] == "acme"
    assert data["providers"][0]["credential_schema"]["api_key"] == {
        "type": "string",
        "sensitive": True,
        "required": True,
    }

    bad = run(
        settings,
        ["providers", "--check"],
        [("acme", OneProvider(make_provider())), ("bad", Raising())],
    )
    assert bad.exit_code == 1
    assert "acme" in bad.stdout
    assert "error: bad (bad): relaykit_providers raised RuntimeError: boom in plugin" in bad.stderr


def test_duplicate_providers_fail_the_command(settings: Settings) -> None:
    result = run(
        settings,
        ["providers"],
        [("one", OneProvider(make_provider())), ("two", OneProvider(make_provider()))],
    )
    assert result.exit_code == 1
    assert "declared by two distributions: one and two" in result.output


def test_plugins_add_commands_and_a_broken_one_is_reported(settings: Settings) -> None:
    class Adds:
        @hookimpl
        def relaykit_cli_commands(self, cli: click.Group) -> None:
            @cli.command()
            def hello() -> None:
                click.echo("hello from a plugin")

    class Breaks:
        @hookimpl
        def relaykit_cli_commands(self, cli: click.Group) -> None:
            raise RuntimeError("no commands today")

    plugins: list[tuple[str, object]] = [("adds", Adds()), ("breaks", Breaks())]
    assert run(settings, ["hello"], plugins).stdout.strip() == "hello from a plugin"
    check = run(settings, ["providers", "--check"], plugins)
    assert check.exit_code == 1 and "no commands today" in check.stderr


def test_db_upgrade_creates_the_home_and_migrates(settings: Settings) -> None:
    from relaykit.storage.schema import head_revision

    result = run(settings, ["db", "upgrade"])
    assert result.exit_code == 0
    assert f"database at revision {head_revision()} (newest {head_revision()})" in result.stdout
    assert settings.home.stat().st_mode & 0o777 == 0o700
