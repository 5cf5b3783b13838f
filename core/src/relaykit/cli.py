"""The ``relaykit`` command line.

Core commands live here; plugins add theirs through ``relaykit_cli_commands`` (the server
adds ``serve``). Commands that print something a script reads print it as the last line of
stdout (``tokens create`` prints the token there); everything else goes to stderr.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import click
import msgspec

from relaykit import __version__, logs, redaction
from relaykit import audit as audit_trail
from relaykit import tenants as tenant_service
from relaykit.catalog import Catalog, DuplicateProviderError
from relaykit.errors import RelaykitError
from relaykit.ids import isoformat_z
from relaykit.keys import (
    KeySet,
    LocalKeyring,
    custody,
    key_usage,
    load_key_provider,
    rewrap_all,
    sealed_row_count,
)
from relaykit.keys.rewrap import UNREADABLE
from relaykit.plugins import RelaykitPluginManager, get_plugin_manager
from relaykit.scaffold import write_provider_package
from relaykit.settings import Settings
from relaykit.storage import integrations as rows
from relaykit.storage.database import Database, open_database
from relaykit.storage.schema import current_revision, head_revision
from relaykit.worker import VerificationWorker


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
        record = state.database.transaction_blocking(tenant_service.create_tenant, name)
    except RelaykitError as exc:
        raise _fail(exc) from None
    click.echo(f"created tenant {record.name}", err=True)
    click.echo(record.id)


@tenants.command("list")
@pass_state
def tenants_list(state: CliState) -> None:
    """List tenants."""
    for record in state.database.read_blocking(tenant_service.list_tenants):
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
        record, token = state.database.transaction_blocking(
            tenant_service.create_token, tenant_name, label=label
        )
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
        records = state.database.read_blocking(tenant_service.list_tokens, tenant_name)
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
        record = state.database.transaction_blocking(tenant_service.revoke_token, token_id)
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
    return {
        "providers": [
            {**msgspec.to_builtins(p.describe()), "distribution": catalog.distributions[p.name]}
            for p in catalog
        ],
        "errors": [msgspec.to_builtins(e) for e in catalog.errors],
    }


# -- new-provider -------------------------------------------------------------------------


@cli.command("new-provider")
@click.argument("name")
@click.option("--directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option("--display-name", default=None, help="The name people read (default: from NAME).")
def new_provider(name: str, directory: Path, display_name: str | None) -> None:
    """Write a provider package relaykit-NAME whose tests pass as generated."""
    try:
        target = write_provider_package(name, directory, display_name=display_name)
    except RelaykitError as exc:
        raise click.ClickException(
            "; ".join(m for ms in getattr(exc, "errors", {}).values() for m in ms) or str(exc)
        ) from None
    click.echo(f"wrote {target}; next: cd {target} && pip install -e '.[test]' && pytest", err=True)
    click.echo(str(target))


# -- worker -------------------------------------------------------------------------------


@cli.command()
@click.option("--concurrency", type=int, default=None, help="Checks in flight (default: settings).")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve this process's metrics (Prometheus text, any path) on this port.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@pass_state
def worker(
    state: CliState, concurrency: int | None, metrics_port: int | None, metrics_host: str
) -> None:
    """Run a verification worker on its own (for several processes on one database)."""
    settings = state.settings
    if concurrency is not None:
        if concurrency < 1:
            raise click.BadParameter("must be at least 1", param_hint="--concurrency")
        settings = msgspec.structs.replace(settings, worker_concurrency=concurrency)
    if metrics_port is not None:
        # The worker's own counts (verifications, lease reclaims, loop errors): the API's
        # /metrics shows only its own process's, unless both share PROMETHEUS_MULTIPROC_DIR.
        import prometheus_client

        prometheus_client.start_http_server(metrics_port, addr=metrics_host)
    try:
        catalog = state.plugin_manager.catalog()
    except DuplicateProviderError as exc:
        raise _fail(exc) from None
    runner = VerificationWorker(settings, state.database, catalog, _key_set(state))

    async def main() -> None:
        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    runner.stop()
                    return

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(stop_on_signal)
                await runner.run()
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await state.database.close_async()

    anyio.run(main, backend_options=event_loop_options())


def event_loop_options() -> dict[str, bool]:
    """uvloop where it is installed (relaykit-server brings it, as uvicorn's own choice for
    ``serve``): the worker is network-bound, and uvloop's loop costs less per request."""
    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


# -- keys -----------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Key-encryption keys: init, status, add, rotate, rewrap, retire (docs/security.md)."""


def _key_set(state: CliState) -> KeySet:
    """Every installed key provider, attached to the database (refuses to go on when the
    keys the database needs are nowhere to be found, like the server)."""
    try:
        key_set = load_key_provider(state.settings, state.plugin_manager)
        custody.attach(key_set, state.database, state.settings)
    except RelaykitError as exc:
        raise _fail(exc) from None
    return key_set


@keys.command("init")
@click.option(
    "--force",
    is_flag=True,
    help="Make a new keyring even though the database needs keys that are lost: they are "
    "retired, and integrations sealed under them must have their secrets replaced.",
)
@pass_state
def keys_init(state: CliState, force: bool) -> None:
    """Make the local keyring (RELAYKIT_KEYRING) and make its key the primary key."""
    settings = state.settings
    if settings.key_provider != "local":
        raise click.ClickException(
            f"RELAYKIT_KEY_PROVIDER is {settings.key_provider!r}: 'keys init' makes the local "
            f"keyring, whose key would become primary instead"
        )
    if settings.keyring.exists():
        raise click.ClickException(
            f"a keyring already exists at {settings.keyring}: it is never overwritten (move "
            f"it away first if it is really to be replaced)"
        )
    recorded = state.database.read_blocking(custody.recorded)
    sealed = state.database.read_blocking(rows.count_sealed)
    lost = sorted(k for (p, k), s in recorded.items() if p == "local" and s != custody.RETIRED)
    if (lost or sealed) and not force:
        needs = f" and needs the local key(s) {', '.join(lost)}" if lost else ""
        raise click.ClickException(
            f"the database holds {sealed} integration(s) with sealed credentials{needs}: "
            f"restore the keyring that holds its keys to {settings.keyring} instead (from its "
            f"backup, or copied from another node). --force makes a new keyring and retires "
            f"the lost keys; integrations sealed under them must then have their secrets "
            f"replaced."
        )
    keyring = LocalKeyring.create(settings.keyring)
    key_id = keyring.default_key_id

    def record(conn: Any) -> None:
        previous = custody.primary(conn)
        for old in lost:
            custody.record(conn, "local", old, custody.RETIRED)
        custody.record_change(
            conn,
            "local",
            key_id,
            custody.PRIMARY,
            {
                "key_provider": "local",
                "primary_key_id": key_id,
                "previous_key_provider": previous[0] if previous else None,
                "previous_key_id": previous[1] if previous else None,
                "lost_key_ids": lost,
            },
        )

    state.database.transaction_blocking(record)
    click.echo(f"created the keyring {settings.keyring}; primary key local {key_id}")
    if lost:
        click.echo(
            f"the keys {', '.join(lost)} are retired as lost: integrations sealed under them "
            f"go to 'error' when next opened, until their secrets are replaced",
            err=True,
        )


@keys.command("status")
@pass_state
def keys_status(state: CliState) -> None:
    """Every key relaykit has used, its state and live rows; the primary is marked with *.
    A local key in the keyring that relaykit has not used yet ('keys add') is listed last."""
    key_set = _key_set(state)
    usage = anyio.run(key_usage, state.database)
    recorded = state.database.read_blocking(custody.recorded)
    local = key_set.local
    for (name, key_id), key_state in sorted(
        recorded.items(), key=lambda item: (item[1] != custody.PRIMARY, item[0])
    ):
        mark = "*" if key_state == custody.PRIMARY else " "
        held = ""
        if name == "local":
            held = (
                "  in keyring" if local is not None and local.holds(key_id) else "  NOT in keyring"
            )
        count = usage.get((name, key_id), 0)
        click.echo(f"{mark} {name} {key_id}  {key_state}  rows {count}{held}")
    for (name, key_id), count in sorted(usage.items()):
        if (name, key_id) == UNREADABLE:
            click.echo(f"? corrupt sealed credentials (cannot be decoded)  rows {count}")
        elif (name, key_id) not in recorded:
            click.echo(f"? {name} {key_id}  unrecorded  rows {count}")
    if local is not None:
        for key_id in local.key_ids:
            if ("local", key_id) not in recorded:
                click.echo(f"  local {key_id}  unused  rows 0  in keyring")


@keys.command("add")
@pass_state
def keys_add(state: CliState) -> None:
    """Add a key to the local keyring without making it primary; its id is the last line.
    Copy the keyring to every node, then 'relaykit keys rotate --key-id ID' (docs/deployment.md)."""
    try:
        keyring = LocalKeyring(state.settings.keyring)
        key_id = keyring.create_key()
    except RelaykitError as exc:
        raise _fail(exc) from None
    click.echo(
        f"added key {key_id} to {keyring.path}: copy the keyring to every node, then run "
        f"'relaykit keys rotate --key-id {key_id}'",
        err=True,
    )
    click.echo(key_id)


@keys.command("rotate")
@click.option(
    "--key-id",
    default=None,
    help="The key to make primary: a KMS key id or ARN, or a key already in the local keyring "
    "('keys add'); without it the local keyring makes a new key.",
)
@pass_state
def keys_rotate(state: CliState, key_id: str | None) -> None:
    """Make a key of RELAYKIT_KEY_PROVIDER the primary (recorded in the database: every node
    seals under it from its next seal); old keys still unwrap until retired. Run rewrap next."""
    key_set = _key_set(state)
    name = state.settings.key_provider
    try:
        key_id = custody.rotate(key_set, name, key_id)
    except RelaykitError as exc:
        raise _fail(exc) from None
    if name == "local":
        click.echo(
            f"the keyring {state.settings.keyring} holds the new key: nodes that do not share "
            f"this file need a copy of it before they can seal (docs/deployment.md)",
            err=True,
        )
    click.echo(f"new primary key {name} {key_id}; run 'relaykit keys rewrap' to move rows onto it")


@keys.command("rewrap")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 10_000))
@pass_state
def keys_rewrap(state: CliState, batch_size: int) -> None:
    """Rewrap every live row's data key with the primary key, online and resumably."""
    key_set = _key_set(state)
    total = anyio.run(sealed_row_count, state.database)
    with click.progressbar(length=total, label="rewrapping", file=sys.stderr) as bar:
        progress = anyio.run(
            functools.partial(
                rewrap_all, state.database, key_set, batch_size=batch_size, on_batch=bar.update
            )
        )
    click.echo(
        f"rewrapped {progress.rewrapped}, skipped {progress.skipped} (changed meanwhile), "
        f"failed {progress.failed}; primary key {key_set.name} {key_set.primary_key_id}"
    )
    if progress.failed:
        raise click.exceptions.Exit(1)


@keys.command("retire")
@click.argument("key_id")
@pass_state
def keys_retire(state: CliState, key_id: str) -> None:
    """Retire a key no live row uses any more (a local key leaves the keyring file)."""
    key_set = _key_set(state)
    recorded = state.database.read_blocking(custody.recorded)
    found = [(p, k) for (p, k) in recorded if k == key_id]
    if not found:
        raise click.ClickException(f"key {key_id} is not one relaykit has used")
    name = found[0][0]
    if recorded[(name, key_id)] == custody.PRIMARY:
        raise click.ClickException(f"key {key_id} is the primary key: rotate first")
    if recorded[(name, key_id)] == custody.RETIRED:
        raise click.ClickException(f"key {key_id} is already retired")
    in_use = anyio.run(key_usage, state.database).get((name, key_id), 0)
    if in_use:
        raise click.ClickException(
            f"key {key_id} still wraps {in_use} rows: run 'relaykit keys rewrap' first"
        )

    state.database.transaction_blocking(
        custody.record_change,
        name,
        key_id,
        custody.RETIRED,
        {"key_provider": name, "key_id": key_id},
    )
    click.echo(f"retired key {name} {key_id}")
    local = key_set.local
    if name == "local" and local is not None and local.holds(key_id):
        if local.key_ids == (key_id,):
            # The keyring's last key (after moving to another key provider): nothing else
            # needs the file; it is the operator's to delete once no backup needs it.
            click.echo(
                f"{local.path} holds no other key: delete it once no backup needs it", err=True
            )
            return
        try:
            local.remove_key(key_id)
        except RelaykitError as exc:
            raise _fail(exc) from None


# -- audit -----------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """The audit trail: check its hash chains, list events."""


def _chain_of(state: CliState, tenant_name: str | None) -> str | None:
    if tenant_name is None:
        return None
    try:
        return state.database.read_blocking(tenant_service.get_tenant, tenant_name).id
    except RelaykitError as exc:
        raise _fail(exc) from None


@audit.command("verify")
@click.option("--tenant", "tenant_name", default=None, help="Only this tenant's chain.")
@pass_state
def audit_verify(state: CliState, tenant_name: str | None) -> None:
    """Recompute every chain's digests and links; exit 1 naming the first broken link of
    each broken chain. Each chain's head (seq and digest) goes to stderr: keep them elsewhere
    to detect events cut from a chain's end."""
    chain = _chain_of(state, tenant_name)
    reports = state.database.read_blocking(audit_trail.verify, chain)
    events = sum(report.events for report in reports)
    broken = [report for report in reports if report.broken is not None]
    for report in reports:
        click.echo(
            f"chain {report.chain}: {report.events} events, head seq {report.head_seq} "
            f"digest {report.head_digest}",
            err=True,
        )
    for report in broken:
        assert report.broken is not None
        click.echo(
            f"broken: chain {report.chain} at event {report.broken.event_id} "
            f"(seq {report.broken.seq}): {report.broken.problem}"
        )
    if broken:
        click.echo(f"{events} events in {len(reports)} chains: {len(broken)} broken")
        raise click.exceptions.Exit(1)
    click.echo(f"{events} events in {len(reports)} chains: intact")


@audit.command("list")
@click.option("--tenant", "tenant_name", required=True, help="The tenant whose events to list.")
@click.option("--integration", "integration_id", default=None, help="Only this integration's.")
@click.option("--action", default=None, help="Only this action (integration.created …).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100))
@pass_state
def audit_list(
    state: CliState,
    tenant_name: str,
    integration_id: str | None,
    action: str | None,
    limit: int,
) -> None:
    """A tenant's newest events, one a line: time, seq, action, actor, resource, statuses."""
    chain = _chain_of(state, tenant_name)
    assert chain is not None
    service = audit_trail.AuditService(state.database)
    try:
        page = anyio.run(
            functools.partial(
                service.list, chain, integration_id=integration_id, action=action, per_page=limit
            )
        )
    except RelaykitError as exc:
        raise _fail(exc) from None
    for event in page.items:
        moved = (
            f" {event.status_before or '-'}->{event.status_after or '-'}"
            if event.status_before or event.status_after
            else ""
        )
        click.echo(
            f"{event.created_at}  {event.seq:>6}  {event.action:<32} {event.actor:<26} "
            f"{event.resource_type}:{event.resource_id or '-'}{moved}"
        )


# -- db ------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: CliState) -> None:
    """Migrate the database schema to the newest revision."""
    database = state.database  # opening it migrates
    revision = current_revision(database)
    click.echo(f"database at revision {revision} (newest {head_revision()}): {database.describe()}")


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
    redaction.install()
    settings = Settings.from_env()
    # text or JSON lines (RELAYKIT_LOG_FORMAT) on stderr; alembic at WARNING unless DEBUG
    logs.setup(settings.log_level, settings.log_format)
    plugin_manager = get_plugin_manager()
    group = build_cli(plugin_manager)
    group.main(args=argv, prog_name="relaykit", obj=CliState(settings, plugin_manager))
