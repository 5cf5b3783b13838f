"""The ``relaykit`` command line.

Core commands live here; plugins add theirs through ``relaykit_cli_commands`` (the server
adds ``serve``). Commands that print something a script reads print it as the last line of
stdout (``tokens create`` prints the token there); everything else goes to stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from relaykit import __version__
from relaykit.catalog import Catalog, DuplicateProviderError
from relaykit.errors import RelaykitError
from relaykit.ids import isoformat_z
from relaykit.plugins import RelaykitPluginManager, get_plugin_manager
from relaykit.settings import Settings
from relaykit.storage import tenants as tenant_store
from relaykit.storage.database import Database, open_database


class CliState:
    """What commands share: settings, the plugin manager, the database (opened on first use)."""

    def __init__(self, settings: Settings, plugin_manager: RelaykitPluginManager) -> None:
        self.settings = settings
        self.plugin_manager = plugin_manager
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = open_database(self.settings)
        return self._database


pass_state = click.make_pass_decorator(CliState)


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="relaykit")
def cli() -> None:
    """relaykit: tenant-aware provider integrations."""


# -- tenants -------------------------------------------------------------------------------


@cli.group()
def tenants() -> None:
    """Create and list tenants."""


@tenants.command("create")
@click.argument("name")
@pass_state
def tenants_create(state: CliState, name: str) -> None:
    """Create the tenant NAME; prints its id."""
    try:
        record = state.database.write(tenant_store.create_tenant, name)
    except RelaykitError as exc:
        raise _fail(exc) from None
    click.echo(f"created tenant {record.name}", err=True)
    click.echo(record.id)


@tenants.command("list")
@pass_state
def tenants_list(state: CliState) -> None:
    """List tenants."""
    for record in state.database.read(tenant_store.list_tenants):
        click.echo(f"{record.id}  {record.name}  {isoformat_z(record.created_at)}")


# -- tokens --------------------------------------------------------------------------------


@cli.group()
def tokens() -> None:
    """Create, list and revoke API bearer tokens."""


@tokens.command("create")
@click.option("--tenant", "tenant_name", required=True, help="Tenant the token acts for.")
@click.option("--label", default=None, help="A note to recognise the token by.")
@pass_state
def tokens_create(state: CliState, tenant_name: str, label: str | None) -> None:
    """Create a token; the token is the last line of stdout, shown this once."""
    try:
        record, token = state.database.write(tenant_store.create_token, tenant_name, label=label)
    except RelaykitError as exc:
        raise _fail(exc) from None
    click.echo(f"created token {record.id} for tenant {record.tenant_name}", err=True)
    click.echo(token)


@tokens.command("list")
@click.option("--tenant", "tenant_name", required=True)
@pass_state
def tokens_list(state: CliState, tenant_name: str) -> None:
    """List a tenant's tokens (ids only: token secrets are never stored)."""
    try:
        records = state.database.read(tenant_store.list_tokens, tenant_name)
    except RelaykitError as exc:
        raise _fail(exc) from None
    for r in records:
        status = f"revoked {isoformat_z(r.revoked_at)}" if r.revoked_at else "active"
        click.echo(f"{r.id}  {status}  {r.label or ''}".rstrip())


@tokens.command("revoke")
@click.argument("token_id")
@pass_state
def tokens_revoke(state: CliState, token_id: str) -> None:
    """Revoke a token, given its id (or the whole token)."""
    try:
        record = state.database.write(tenant_store.revoke_token, token_id)
    except RelaykitError as exc:
        raise _fail(exc) from None
    click.echo(f"revoked token {record.id} of tenant {record.tenant_name}")


# -- providers -----------------------------------------------------------------------------


@cli.command()
@click.option("--check", is_flag=True, help="Report plugins that failed to load; exit 1 if any.")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@pass_state
def providers(state: CliState, check: bool, as_json: bool) -> None:
    """List the providers of every installed plugin."""
    try:
        catalog = state.plugin_manager.catalog()
    except DuplicateProviderError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(_catalog_json(catalog), indent=2))
    else:
        for provider in catalog:
            click.echo(
                f"{provider.name:<16} {provider.category:<14} "
                f"{','.join(provider.capabilities):<48} {catalog.distributions[provider.name]}"
            )
    if check:
        if catalog.errors:
            for error in catalog.errors:
                click.echo(f"error: {error.distribution} ({error.plugin}): {error.error}", err=True)
            raise click.exceptions.Exit(1)
        click.echo(f"ok: {len(catalog)} providers loaded, no plugin errors", err=True)


def _catalog_json(catalog: Catalog) -> dict[str, Any]:
    import msgspec

    return {
        "providers": [
            {**msgspec.to_builtins(p.describe()), "distribution": catalog.distributions[p.name]}
            for p in catalog
        ],
        "errors": [msgspec.to_builtins(e) for e in catalog.errors],
    }


# -- worker -------------------------------------------------------------------------------


@cli.command()
@click.option("--concurrency", type=int, default=None, help="Checks in flight (default: settings).")
@pass_state
def worker(state: CliState, concurrency: int | None) -> None:
    """Run a verification worker on its own (for several processes on one database)."""
    import signal

    import anyio
    import msgspec

    from relaykit.sealing import LocalKeyring
    from relaykit.worker import VerificationWorker

    settings = state.settings
    if concurrency is not None:
        if concurrency < 1:
            raise click.BadParameter("must be at least 1", param_hint="--concurrency")
        settings = msgspec.structs.replace(settings, worker_concurrency=concurrency)
    try:
        catalog = state.plugin_manager.catalog()
    except DuplicateProviderError as exc:
        raise _fail(exc) from None
    runner = VerificationWorker(
        settings, state.database, catalog, LocalKeyring.in_home(settings.home)
    )

    async def main() -> None:
        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    runner.stop()
                    return

        async with anyio.create_task_group() as group:
            group.start_soon(stop_on_signal)
            await runner.run()
            group.cancel_scope.cancel()

    anyio.run(main)


# -- db ------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: CliState) -> None:
    """Migrate the database schema to the newest revision."""
    from relaykit.storage.schema import current_revision, head_revision

    database = state.database  # opening it migrates
    revision = current_revision(database)
    click.echo(
        f"database at revision {revision} (newest {head_revision()}): "
        f"{database.url.render_as_string(hide_password=True)}"
    )


def build_cli(plugin_manager: RelaykitPluginManager) -> click.Group:
    """The command line: the core's commands plus every plugin's, on a fresh group."""
    group = click.Group(
        name="relaykit",
        commands=dict(cli.commands),
        params=list(cli.params),
        help=cli.help,
        context_settings=cli.context_settings,
    )
    plugin_manager.add_cli_commands(group)
    return group


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    plugin_manager = get_plugin_manager()
    group = build_cli(plugin_manager)
    group.main(args=argv, prog_name="relaykit", obj=CliState(settings, plugin_manager))
