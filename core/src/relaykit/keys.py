"""Key management: which key provider relaykit wraps with, and rewrapping rows onto it.

Key providers come from plugins like providers do (``relaykit_key_providers``); the local
keyring is the built-in one. ``RELAYKIT_KEY_PROVIDER`` names the provider new data keys are
wrapped with (default ``local``); every other installed provider still unwraps the blobs it
wrapped, so moving from one to another is: install, switch, ``relaykit keys rewrap``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit.errors import ConfigurationError, RelaykitError
from relaykit.sealing import KeyProvider, KeySet, LocalKeyring, SealContext, read_blob, rewrap
from relaykit.settings import Settings
from relaykit.storage.database import Database
from relaykit.storage.models import integrations

logger = logging.getLogger("relaykit.keys")


class KeyProviderSpec(msgspec.Struct, frozen=True):
    """A key provider a plugin offers: its name and how to make it from the settings."""

    name: str
    factory: Callable[[Settings], KeyProvider]


def load_key_provider(settings: Settings, plugin_manager: Any) -> KeySet:
    """The selected key provider, with every other installed one for unwrapping."""
    providers: dict[str, KeyProvider] = {"local": LocalKeyring.in_home(settings.home)}
    for impl in plugin_manager.hook.relaykit_key_providers.get_hookimpls():
        try:
            declared = impl.function()
            specs = [declared] if isinstance(declared, KeyProviderSpec) else list(declared or ())
        except Exception as exc:
            logger.error(
                "key providers of %s failed to load: %s", impl.plugin_name, type(exc).__name__
            )
            continue
        for spec in specs:
            if not isinstance(spec, KeyProviderSpec) or spec.name in providers:
                logger.error(
                    "skipping key provider %r from %s",
                    getattr(spec, "name", spec),
                    impl.plugin_name,
                )
                continue
            try:
                providers[spec.name] = spec.factory(settings)
            except Exception as exc:
                if spec.name == settings.key_provider:
                    raise ConfigurationError(
                        f"key provider {spec.name!r} could not start: {type(exc).__name__}"
                    ) from None
                logger.error("key provider %s could not start: %s", spec.name, type(exc).__name__)
    selected = providers.get(settings.key_provider)
    if selected is None:
        raise ConfigurationError(
            f"RELAYKIT_KEY_PROVIDER={settings.key_provider!r}, but the installed key providers "
            f"are: {', '.join(sorted(providers))}"
        )
    return KeySet(selected, {name: p for name, p in providers.items() if name != selected.name})


def key_usage(database: Database) -> Counter[tuple[str, str]]:
    """How many live sealed rows each (key provider, key id) wraps."""

    def count(conn: sa.Connection) -> Counter[tuple[str, str]]:
        usage: Counter[tuple[str, str]] = Counter()
        for row in conn.execute(
            sa.select(integrations.c.sealed_credentials).where(
                integrations.c.sealed_credentials.is_not(None)
            )
        ):
            blob = read_blob(row.sealed_credentials)
            usage[(blob.key_provider, blob.key_id)] += 1
        return usage

    return database.read(count)


class RewrapProgress(msgspec.Struct):
    rewrapped: int = 0
    skipped: int = 0  # changed by a concurrent write between read and update: already current
    failed: int = 0


def rewrap_all(
    database: Database,
    key_provider: KeyProvider,
    *,
    batch_size: int = 200,
    on_batch: Callable[[int], None] = lambda done: None,
) -> RewrapProgress:
    """Move every sealed row not under the primary key onto it, online.

    Rows are read in batches by id (so a run can stop and resume anywhere: it only ever looks
    for rows still under an old key), rewrapped in memory, and written back with
    compare-and-set on the blob itself: a row a tenant re-sealed meanwhile is left as it is
    (its new blob is already under the primary key). Passes repeat until one finds nothing
    to do, which also catches rows another process sealed with the old key just before it
    noticed the rotation.
    """
    progress = RewrapProgress()
    while True:
        moved_this_pass = 0
        for batch in _batches(database, batch_size):
            updates = []
            for row in batch:
                context = SealContext(row.tenant_id, row.id, row.provider)
                try:
                    fresh = rewrap(row.sealed_credentials, context, key_provider)
                except RelaykitError as exc:
                    progress.failed += 1
                    logger.error("integration %s cannot be rewrapped: %s", row.id, exc)
                    continue
                if fresh is not None:
                    updates.append((row.id, row.sealed_credentials, fresh))
            done = database.write(_compare_and_set, updates)
            progress.rewrapped += done
            progress.skipped += len(updates) - done
            moved_this_pass += done
            on_batch(len(batch))
        if moved_this_pass == 0:
            return progress


def _batches(database: Database, size: int) -> Iterator[list[Any]]:
    def after(conn: sa.Connection, last_id: str) -> list[Any]:
        return list(
            conn.execute(
                sa.select(
                    integrations.c.id,
                    integrations.c.tenant_id,
                    integrations.c.provider,
                    integrations.c.sealed_credentials,
                )
                .where(integrations.c.sealed_credentials.is_not(None), integrations.c.id > last_id)
                .order_by(integrations.c.id)
                .limit(size)
            )
        )

    last_id = ""
    while rows := database.read(after, last_id):
        yield rows
        last_id = rows[-1].id


def _compare_and_set(conn: sa.Connection, updates: list[tuple[str, bytes, bytes]]) -> int:
    done = 0
    for integration_id, old, new in updates:
        result = conn.execute(
            integrations.update()
            .where(integrations.c.id == integration_id, integrations.c.sealed_credentials == old)
            .values(sealed_credentials=new)
        )
        done += result.rowcount
    return done
