"""Key custody: which key-encryption key is primary, recorded in the database.

Every node seals under the key the database names (``encryption_keys``, state ``primary``),
not under whatever its own keyring or settings say, so ``relaykit keys rotate`` on one node
is seen by every node at its next seal, and no node keeps sealing under a key the others
are about to retire. The table also lists every key relaykit has used, which tells a lost
key (the operator's fault: restore it) from a blob naming a key relaykit never had (that
row's fault: it was altered).

:func:`attach` runs at every start (server, worker, CLI): it fills the table the first time
(from the keys the live rows use), creates the local keyring only on an empty database, and
refuses to start when the database holds sealed rows and the key provider holds none of
their keys, saying what to restore.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from relaykit.errors import ConfigurationError
from relaykit.sealing import SealError, read_blob
from relaykit.storage import integrations as rows
from relaykit.storage.database import IntegrityError
from relaykit.storage.models import encryption_keys as k

if TYPE_CHECKING:
    from relaykit.keys.loading import KeySet
    from relaykit.keys.local import LocalKeyring
    from relaykit.settings import Settings
    from relaykit.storage.database import Database

logger = logging.getLogger("relaykit.keys")

PRIMARY = "primary"
ACTIVE = "active"
RETIRED = "retired"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- the table (functions of one connection) -------------------------------------------------


def primary(conn: sa.Connection) -> tuple[str, str] | None:
    """The primary key's ``(key_provider, key_id)``, or ``None`` before the first start."""
    row = conn.execute(
        sa.select(k.c.key_provider, k.c.key_id).where(k.c.state == PRIMARY).limit(1)
    ).first()
    return (row.key_provider, row.key_id) if row is not None else None


def recorded(conn: sa.Connection) -> dict[tuple[str, str], str]:
    """Every key relaykit has used: ``(key_provider, key_id) -> state``."""
    return {
        (row.key_provider, row.key_id): row.state
        for row in conn.execute(sa.select(k.c.key_provider, k.c.key_id, k.c.state))
    }


def known(conn: sa.Connection) -> frozenset[tuple[str, str]]:
    """The keys relaykit uses (not retired): a blob under any other key was altered, or its
    key was given up as lost (``relaykit keys init --force``)."""
    return frozenset(key for key, state in recorded(conn).items() if state != RETIRED)


def record(conn: sa.Connection, key_provider: str, key_id: str, state: str) -> None:
    """Record a key in ``state``; making one primary demotes the previous primary to active."""
    now = _now()
    if state == PRIMARY:
        conn.execute(
            k.update()
            .where(k.c.state == PRIMARY)
            .where(sa.or_(k.c.key_provider != key_provider, k.c.key_id != key_id))
            .values(state=ACTIVE, updated_at=now)
        )
    updated = conn.execute(
        k.update()
        .where(k.c.key_provider == key_provider, k.c.key_id == key_id)
        .values(state=state, updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(
            k.insert().values(
                key_provider=key_provider,
                key_id=key_id,
                state=state,
                created_at=now,
                updated_at=now,
            )
        )


def _usage(conn: sa.Connection) -> Counter[tuple[str, str]]:
    """The keys live rows' blobs name (a corrupt blob is that row's problem, not the
    start's: it is left out)."""
    usage: Counter[tuple[str, str]] = Counter()
    for sealed in rows.sealed_blobs(conn):
        try:
            blob = read_blob(sealed)
        except SealError:
            continue
        usage[(blob.key_provider, blob.key_id)] += 1
    return usage


# -- start-up ----------------------------------------------------------------------------------


class _State:
    def __init__(self, keys: dict[tuple[str, str], str], sealed: int) -> None:
        self.keys = keys
        self.sealed = sealed

    @property
    def primary(self) -> tuple[str, str] | None:
        return next((key for key, state in self.keys.items() if state == PRIMARY), None)

    def in_use(self, key_provider: str) -> list[str]:
        """The ids of ``key_provider``'s keys not retired."""
        return sorted(
            key_id
            for (name, key_id), state in self.keys.items()
            if name == key_provider and state != RETIRED
        )


def _read_state(conn: sa.Connection) -> _State:
    return _State(recorded(conn), rows.count_sealed(conn))


def _adopt(conn: sa.Connection, first_primary: tuple[str, str] | None) -> _State:
    """The first start on this database since key custody: record the keys the live rows
    use, then ``first_primary`` (if given and none is recorded meanwhile)."""
    if not recorded(conn):
        for key_provider, key_id in _usage(conn):
            record(conn, key_provider, key_id, ACTIVE)
    if first_primary is not None and primary(conn) is None:
        record(conn, *first_primary, PRIMARY)
    return _read_state(conn)


def _adopt_once(database: Database, first_primary: tuple[str, str] | None) -> _State:
    """:func:`_adopt`; when another node did it at the same moment (a unique key refused
    this one's rows), what that node recorded."""
    try:
        return database.transaction_blocking(_adopt, first_primary)
    except IntegrityError:
        logger.info("another node recorded the keys first: using its record")
        return database.read_blocking(_read_state)


def attach(keys: KeySet, database: Database, settings: Settings) -> None:
    """Start-up: make ``keys`` seal under the database's primary key, creating the local
    keyring only on an empty database, and refuse to start if the keys the database needs
    are nowhere to be found (:class:`ConfigurationError` saying what to restore).

    "Empty" means no key recorded and no live integration with sealed credentials: a new
    database (or one upgraded to key custody with nothing sealed). Then, with the local key
    provider selected and no keyring at ``RELAYKIT_KEYRING``, a new keyring is made; if
    another node recorded its own key first meanwhile, this node's new file is removed again
    and the start refuses like any node lacking the primary's keyring."""
    state = database.read_blocking(_read_state)
    keys.find_local_keyring()  # made by a process sharing the file since keys were loaded
    created: LocalKeyring | None = None
    if not state.keys:
        # The first start since key custody (a new database, or one upgraded to it).
        if state.sealed == 0 and keys.local is None and settings.key_provider == "local":
            created = keys.create_local_keyring()
        state = _adopt_once(database, _first_primary(keys, settings))
        if created is not None and state.primary != ("local", created.default_key_id):
            _discard(keys, created)  # another node's key won: this file never sealed
    _check_local_keys(keys, database, settings, state)
    current = state.primary
    if current is None:
        first = _first_primary(keys, settings)
        if first is None:
            raise ConfigurationError(_no_primary_message(settings))
        state = _adopt_once(database, first)
        current = state.primary
        assert current is not None
    keys.bind(database, current, frozenset(key for key, s in state.keys.items() if s != RETIRED))
    provider = keys.provider_named(current[0])
    if provider is None:
        logger.error(
            "the primary key is %s's %s, but no key provider %r is installed here: new "
            "credentials cannot be sealed on this node until it is",
            current[0],
            current[1],
            current[0],
        )
    elif current[0] == "local" and keys.local is not None and not keys.local.holds(current[1]):
        logger.error(
            "the primary key local %s is not in the keyring %s: new credentials cannot be "
            "sealed on this node until the keyring from the node that rotated is copied here "
            "(docs/deployment.md)",
            current[1],
            settings.keyring,
        )


def _discard(keys: KeySet, created: LocalKeyring) -> None:
    with contextlib.suppress(OSError):
        if created.path.stat().st_ino == created.inode:
            created.path.unlink()
    keys.drop_local_keyring()


def _check_local_keys(keys: KeySet, database: Database, settings: Settings, state: _State) -> None:
    """Refuse to start when the database needs local keys and the keyring holds none of
    them: live rows are sealed under them, or one of them is the primary."""
    needed = state.in_use("local")
    if not needed:
        return
    local = keys.local
    held = [key_id for key_id in needed if local is not None and local.holds(key_id)]
    current = state.primary
    if not held:
        if current is not None and current[0] == "local":
            named = needed if state.sealed else [current[1]]
            raise ConfigurationError(_restore_message(settings, named, state))
        # Not the primary: refuse only if live rows still use them (a full read of the
        # sealed rows' headers, on this path only).
        used = sorted(
            key_id
            for (name, key_id), count in database.read_blocking(_usage).items()
            if name == "local" and count
        )
        if used:
            raise ConfigurationError(_restore_message(settings, used, state))
        logger.warning(
            "the database lists the local key(s) %s, which no live integration uses and no "
            "keyring here holds: 'relaykit keys retire' them",
            ", ".join(needed),
        )
        return
    missing = [key_id for key_id in needed if key_id not in held]
    if missing:
        logger.warning(
            "the keyring %s lacks the local key(s) %s the database lists: integrations "
            "sealed under them cannot be opened on this node (copy the keyring from the node "
            "that has them)",
            settings.keyring,
            ", ".join(missing),
        )


def _restore_message(settings: Settings, needed: list[str], state: _State) -> str:
    keyring = settings.keyring
    if state.sealed:
        what = (
            f"the database holds {state.sealed} integration(s) with sealed credentials and "
            f"needs the local key(s) {', '.join(needed)}"
        )
        give_up = (
            "To give up the sealed credentials instead, 'relaykit keys init --force' makes "
            "a new keyring; every integration sealed under the lost keys must then have its "
            "secret replaced."
        )
    else:
        what = (
            f"the database records the local key(s) {', '.join(needed)} as primary (another "
            f"node made or rotated it)"
        )
        give_up = (
            "If no node has that keyring any more, 'relaykit keys init --force' makes a new one."
        )
    return (
        f"{what}, but {_what_keyring_holds(keyring)}. Restore the keyring that holds them "
        f"(from its backup, or copied from another node: docs/deployment.md) to {keyring}, "
        f"or point RELAYKIT_KEYRING at it. {give_up}"
    )


def _what_keyring_holds(path: Path) -> str:
    if not path.exists():
        return f"there is no keyring at {path}"
    return f"the keyring at {path} holds none of them"


def _first_primary(keys: KeySet, settings: Settings) -> tuple[str, str] | None:
    provider = keys.provider_named(settings.key_provider)
    if provider is None:
        return None
    return (provider.name, provider.default_key_id)


def _no_primary_message(settings: Settings) -> str:
    if settings.key_provider == "local":
        return (
            f"the database records no primary key and there is no keyring at "
            f"{settings.keyring}: restore it, or run 'relaykit keys init' to make one"
        )
    return f"the key provider {settings.key_provider!r} is not available to name a first key"


# -- changing keys (relaykit keys rotate / retire) ---------------------------------------------

_EVENTS = {PRIMARY: "keys.rotated", RETIRED: "keys.retired"}


def record_change(
    conn: sa.Connection,
    key_provider: str,
    key_id: str,
    state: str,
    details: dict[str, object],
) -> None:
    """Record a key's new state (``primary`` or ``retired``) with its audit event on the
    system chain (``keys.rotated`` / ``keys.retired``), in the caller's transaction."""
    from relaykit import audit

    record(conn, key_provider, key_id, state)
    audit.record(
        conn,
        tenant_id=None,
        action=_EVENTS[state],
        resource_type="key",
        # a KMS key's id (an ARN) is longer than an id column: details has it
        resource_id=key_id if len(key_id) <= 26 else None,
        details=details,
    )


def rotate(keys: KeySet, key_provider: str, key_id: str | None = None) -> str:
    """Make ``key_id`` of ``key_provider`` the primary key (a new key of the provider's own
    making when not given: the local keyring's), after checking this node can use it, and
    record it in the database with its ``keys.rotated`` audit event in one transaction.
    Every node seals under it from its next seal. Returns the key id."""
    from relaykit.keys.loading import probe_key

    database = keys.database
    provider = keys.provider_named(key_provider)
    if provider is None:
        raise ConfigurationError(f"the key provider {key_provider!r} is not available here")
    if key_id is None:
        create_key = getattr(provider, "create_key", None)
        if create_key is None:
            raise ConfigurationError(
                f"the {key_provider} key provider does not make keys: create one with its own "
                f"tooling and give its id"
            )
        key_id = str(create_key())
    probe_key(provider, key_id)
    previous = keys.name, keys.primary_key_id
    chosen = key_id

    def apply(conn: sa.Connection) -> None:
        record_change(
            conn,
            key_provider,
            chosen,
            PRIMARY,
            {
                "key_provider": key_provider,
                "primary_key_id": chosen,
                "previous_key_provider": previous[0],
                "previous_key_id": previous[1],
            },
        )

    try:
        database.transaction_blocking(apply)
    except IntegrityError:
        raise ConfigurationError(
            "another process made a key primary at the same moment: see 'relaykit keys "
            "status' and run the rotation again if it is still wanted"
        ) from None
    keys.set_primary(key_provider, chosen)
    logger.info("primary key is now %s %s (was %s %s)", key_provider, chosen, *previous)
    return chosen
