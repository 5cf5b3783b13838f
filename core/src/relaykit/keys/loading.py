"""The installed key providers, and the key new data keys are wrapped with.

Key providers come from plugins like providers do (``relaykit_key_providers``); the local
keyring is the built-in one. The database names the primary key (:mod:`relaykit.keys.custody`);
``RELAYKIT_KEY_PROVIDER`` names the provider a new database begins with and the one
``relaykit keys rotate`` makes or names the next key with. Every installed provider unwraps
the blobs it wrapped, so moving from one to another is: install it on every node, set
``RELAYKIT_KEY_PROVIDER``, ``relaykit keys rotate``, ``relaykit keys rewrap``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from relaykit.errors import ConfigurationError
from relaykit.keys.local import KeyringExists, KeyringMissing, LocalKeyring
from relaykit.metrics import KEY_PROVIDER_ERRORS
from relaykit.sealing import (
    CredentialsUnreadable,
    KeyProvider,
    KeyUnavailable,
    SealError,
    runs_in_process,
)
from relaykit.settings import Settings

if TYPE_CHECKING:
    from relaykit.storage.database import Database

logger = logging.getLogger("relaykit.keys")


class KeyProviderSpec(msgspec.Struct, frozen=True):
    """A key provider a plugin offers: its name and how to make it from the settings."""

    name: str
    factory: Callable[[Settings], KeyProvider]


def load_key_provider(settings: Settings, plugin_manager: Any) -> KeySet:
    """Every installed key provider, as a :class:`KeySet`: the local keyring (if its file
    exists: :func:`relaykit.keys.custody.attach` decides whether to create it) and each
    plugin's. Which key is primary comes from the database when the set is attached."""
    providers: dict[str, KeyProvider] = {}
    local: LocalKeyring | None = None
    try:
        local = LocalKeyring(settings.keyring)
        providers["local"] = local
    except KeyringMissing:
        pass
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
            if not isinstance(spec, KeyProviderSpec) or spec.name in (*providers, "local"):
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
    if settings.key_provider not in providers and settings.key_provider != "local":
        raise ConfigurationError(
            f"RELAYKIT_KEY_PROVIDER={settings.key_provider!r}, but the installed key providers "
            f"are: {', '.join(sorted({'local', *providers}))}"
        )
    return KeySet(providers, keyring_path=settings.keyring, local=local)


def local_key_set(settings: Settings, database: Database) -> KeySet:
    """The local keyring alone (``RELAYKIT_KEYRING``), attached to ``database`` like a
    server's key set (created on an empty database): for tools, benchmarks and tests."""
    from relaykit.keys import custody

    local: LocalKeyring | None = None
    with contextlib.suppress(KeyringMissing):
        local = LocalKeyring(settings.keyring)
    keys = KeySet({"local": local} if local else {}, keyring_path=settings.keyring, local=local)
    custody.attach(keys, database, settings)
    return keys


#: How long a node trusts its copy of the database's primary key before reading it again
#: (a rotation elsewhere is seen within this; rows sealed under the old key meanwhile are
#: what ``relaykit keys rewrap``'s repeated passes move, and retire refuses while any stay).
PRIMARY_REFRESH_SECONDS = 1.0


class KeySet:
    """Every installed key provider, and the key new data keys are wrapped with: the
    database's primary key (:mod:`relaykit.keys.custody`), not a node's own choice.

    Failures come out as :class:`~relaykit.sealing.KeyUnavailable` (the provider cannot
    use the key: counted in ``relaykit_key_provider_errors_total``) or
    :class:`~relaykit.sealing.CredentialsUnreadable` (that blob's fault). A blob naming a
    key the database never recorded is the blob's fault, not a lost key.
    """

    def __init__(
        self,
        providers: Mapping[str, KeyProvider],
        *,
        primary: tuple[str, str] | None = None,
        keyring_path: Path | None = None,
        local: LocalKeyring | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._keyring_path = keyring_path
        self.local = local
        self._primary = primary
        self._known: frozenset[tuple[str, str]] | None = None  # None: not attached, trust all
        self._in_process = all(runs_in_process(p) for p in self._providers.values())
        self._known_read = 0.0  # time.monotonic() of the last read of the recorded keys
        self._database: Database | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        #: how many times a provider could not use a key, in this process (readiness
        #: probes again when it changed since its last good probe)
        self.failures = 0
        #: keys whose last use failed, and the exception's type (cleared by a good use)
        self._failed: dict[tuple[str, str], str] = {}

    @classmethod
    def single(cls, provider: KeyProvider, key_id: str | None = None) -> KeySet:
        """A set of one provider sealing under ``key_id`` (its default if not given), with
        no database: for tests and tools."""
        local = provider if isinstance(provider, LocalKeyring) else None
        return cls(
            {provider.name: provider},
            primary=(provider.name, key_id or provider.default_key_id),
            local=local,
        )

    # -- start-up (relaykit.keys.custody) ------------------------------------------------------

    def find_local_keyring(self) -> None:
        """Load the local keyring if it appeared since the providers were loaded (another
        process sharing the file made it meanwhile)."""
        if self.local is None and self._keyring_path is not None:
            with contextlib.suppress(KeyringMissing):
                self.local = LocalKeyring(self._keyring_path)
                self._providers["local"] = self.local

    def create_local_keyring(self) -> LocalKeyring | None:
        """Make the local keyring at ``RELAYKIT_KEYRING`` and use it; ``None`` when another
        process made one there meanwhile (a shared file: it is loaded and used instead)."""
        assert self._keyring_path is not None
        made: LocalKeyring | None
        try:
            made = self.local = LocalKeyring.create(self._keyring_path)
        except KeyringExists:
            made, self.local = None, LocalKeyring(self._keyring_path)
        self._providers["local"] = self.local
        return made

    def drop_local_keyring(self) -> None:
        """Forget a keyring :meth:`create_local_keyring` made that is not to be used."""
        self.local = None
        self._providers.pop("local", None)

    def bind(
        self,
        database: Database,
        primary: tuple[str, str],
        known: frozenset[tuple[str, str]],
    ) -> None:
        self._database = database
        self._primary = primary
        self._known = known
        self._known_read = time.monotonic()
        self._checked = time.monotonic()

    async def refresh(self) -> None:
        """Read the database's primary key again if this copy is older than
        :data:`PRIMARY_REFRESH_SECONDS` (before sealing)."""
        if self._database is None or time.monotonic() - self._checked < PRIMARY_REFRESH_SECONDS:
            return
        from relaykit.keys import custody

        current = await self._database.read(custody.primary)
        self._checked = time.monotonic()
        if current is not None and current != self._primary:
            logger.info("the primary key is now %s's %s", *current)
            self._primary = current
            if self._known is not None:
                self._known = self._known | {current}

    @property
    def database(self) -> Database:
        if self._database is None:
            raise ConfigurationError("the key set is not attached to a database")
        return self._database

    def set_primary(self, key_provider: str, key_id: str) -> None:
        """This process made ``key_id`` primary (``relaykit keys rotate``)."""
        self._primary = (key_provider, key_id)
        if self._known is not None:
            self._known = self._known | {(key_provider, key_id)}

    # -- what sealing uses (relaykit.sealing.Keys) ---------------------------------------------

    @property
    def name(self) -> str:
        return self._current()[0]

    @property
    def primary_key_id(self) -> str:
        return self._current()[1]

    def _current(self) -> tuple[str, str]:
        if self._primary is None:
            raise KeyUnavailable("no primary key: the key set is not attached to a database")
        return self._primary

    @property
    def in_process(self) -> bool:
        """Whether every installed provider wraps and unwraps in memory (the local keyring
        alone): a batch of blobs under any keys (the worker's claim) may then be opened on
        the event loop, else in a worker thread, since a blob under a remote provider's key
        may turn up in any batch. One seal or open decides by its own provider
        (:meth:`in_process_for`)."""
        return self._in_process

    def in_process_for(self, key_provider: str) -> bool:
        """Whether the named provider wraps and unwraps in memory: one seal or open under
        it may run on the event loop (:func:`relaykit.sealing.seal`, ``unseal``). A provider
        not installed here fails at once, without I/O: that too may run on the loop."""
        provider = self._providers.get(key_provider)
        return provider is None or runs_in_process(provider)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._providers)

    def provider_named(self, name: str) -> KeyProvider | None:
        return self._providers.get(name)

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        name, key_id = self._current()
        try:
            wrapped = self._call(
                name, "wrap", lambda provider: provider.wrap(key_id, data_key, associated_data)
            )
        except KeyUnavailable as exc:
            self._failed_use(name, key_id, "wrap", exc)
            raise
        self._good_use(name, key_id)
        return key_id, wrapped

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        """Unwrap with the primary's provider (the readiness probe)."""
        return self.unwrap_from(self.name, key_id, wrapped, associated_data)

    def unwrap_from(
        self, key_provider: str, key_id: str, wrapped: bytes, associated_data: bytes
    ) -> bytes:
        try:
            data_key = self._call(
                key_provider,
                "unwrap",
                lambda provider: provider.unwrap(key_id, wrapped, associated_data),
            )
        except KeyUnavailable as exc:
            if not self._is_known(key_provider, key_id):
                raise CredentialsUnreadable(
                    f"sealed credentials name {key_provider} key {key_id}, which relaykit "
                    f"does not use: they were altered, come from another installation, or "
                    f"their key was given up as lost"
                ) from None
            self._failed_use(key_provider, key_id, "unwrap", exc)
            raise
        self._good_use(key_provider, key_id)
        return data_key

    def _call(self, name: str, operation: str, call: Callable[[KeyProvider], bytes]) -> bytes:
        """``call`` on the provider named ``name``: its own two failures as they are, a
        provider not installed here or any other exception as :class:`KeyUnavailable`
        (the exception's type only: a plugin's message may carry anything)."""
        provider = self._providers.get(name)
        if provider is None:
            raise KeyUnavailable(f"key provider {name!r} is not installed here")
        try:
            return call(provider)
        except (KeyUnavailable, CredentialsUnreadable):
            raise
        except Exception as exc:
            raise KeyUnavailable(
                f"key provider {name} failed to {operation}: {type(exc).__name__}"
            ) from None

    # -- failures (counted; /ready probes the failing keys again) ------------------------------

    def _failed_use(
        self, key_provider: str, key_id: str, operation: str, exc: KeyUnavailable
    ) -> None:
        KEY_PROVIDER_ERRORS.labels(key_provider, operation).inc()
        self.failures += 1
        first = (key_provider, key_id) not in self._failed
        self._failed[(key_provider, key_id)] = type(exc).__name__
        if first:  # once per failing key, not per row: the counter has the rest
            logger.error(
                "key provider %s cannot %s under key %s: %s", key_provider, operation, key_id, exc
            )

    def _good_use(self, key_provider: str, key_id: str) -> None:
        if self._failed and self._failed.pop((key_provider, key_id), None) is not None:
            logger.info("key provider %s uses key %s again", key_provider, key_id)

    def recheck_failed(self) -> list[tuple[str, str]]:
        """Probe every key whose last use failed (:func:`probe_key`); the ones still failing.
        Blocking: a remote provider's probe is a network call (run it in a thread)."""
        still: list[tuple[str, str]] = []
        for key_provider, key_id in list(self._failed):
            if self._known is not None and (key_provider, key_id) not in self._known:
                self._failed.pop((key_provider, key_id), None)  # retired since: not needed
                continue
            provider = self._providers.get(key_provider)
            try:
                if provider is None:
                    raise KeyUnavailable(f"key provider {key_provider!r} is not installed here")
                probe_key(provider, key_id)
            except KeyUnavailable:
                still.append((key_provider, key_id))
            else:
                self._good_use(key_provider, key_id)
        return still

    def _is_known(self, key_provider: str, key_id: str) -> bool:
        """Whether the database lists the key as in use. Read again on a miss (another node
        may have rotated since this one last looked) and, at most every
        :data:`PRIMARY_REFRESH_SECONDS`, on a hit too: a key retired or given up as lost
        elsewhere (``relaykit keys init --force``) stops being this node's to wait for."""
        if self._known is None:
            return True
        hit = (key_provider, key_id) in self._known
        if self._database is None or (
            hit and time.monotonic() - self._known_read < PRIMARY_REFRESH_SECONDS
        ):
            return hit
        from relaykit.keys import custody

        with self._lock:
            try:
                self._known = self._database.read_blocking(custody.known)
                self._known_read = time.monotonic()
            except Exception:
                return True  # cannot tell: not this row's fault
        return (key_provider, key_id) in self._known


PROBE_ASSOCIATED_DATA = b"relaykit/key-probe/v1"


def probe_key(provider: KeyProvider, key_id: str) -> None:
    """Wrap a random data key under ``key_id`` and unwrap it back: raises
    :class:`~relaykit.sealing.KeyUnavailable` if ``provider`` cannot use the key."""
    data_key = secrets.token_bytes(32)
    try:
        wrapped = provider.wrap(key_id, data_key, PROBE_ASSOCIATED_DATA)
        same = provider.unwrap(key_id, wrapped, PROBE_ASSOCIATED_DATA) == data_key
    except SealError as exc:
        raise KeyUnavailable(
            f"key provider {provider.name} cannot use key {key_id}: {exc}"
        ) from None
    except Exception as exc:
        raise KeyUnavailable(
            f"key provider {provider.name} cannot use key {key_id}: {type(exc).__name__}"
        ) from None
    if not same:
        raise KeyUnavailable(f"key provider {provider.name} unwrapped key {key_id} wrongly")
