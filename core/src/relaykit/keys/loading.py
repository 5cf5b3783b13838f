"""Which key provider relaykit wraps with, and every other installed one for unwrapping.

Key providers come from plugins like providers do (``relaykit_key_providers``); the local
keyring is the built-in one. ``RELAYKIT_KEY_PROVIDER`` names the provider new data keys are
wrapped with (default ``local``); every other installed provider still unwraps the blobs it
wrapped, so moving from one to another is: install, switch, ``relaykit keys rewrap``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from relaykit.errors import ConfigurationError
from relaykit.keys.local import LocalKeyring
from relaykit.sealing import KeyProvider, runs_in_process
from relaykit.settings import Settings

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


class KeySet:
    """The key provider relaykit wraps with (``RELAYKIT_KEY_PROVIDER``), plus every other
    installed one, so blobs wrapped by a provider you are moving away from still open (and
    ``relaykit keys rewrap`` can move them)."""

    def __init__(
        self, primary: KeyProvider, others: Mapping[str, KeyProvider] | None = None
    ) -> None:
        self.primary = primary
        self.name = primary.name
        self._others = dict(others or {})

    @property
    def primary_key_id(self) -> str:
        return self.primary.primary_key_id

    @property
    def in_process(self) -> bool:
        """Wrap and unwrap go to the primary: the set runs on the event loop when it does
        (:func:`relaykit.sealing.runs_in_process`), e.g. the local keyring."""
        return runs_in_process(self.primary)

    def provider_named(self, name: str) -> KeyProvider | None:
        return self.primary if name == self.primary.name else self._others.get(name)

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        return self.primary.wrap(data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        return self.primary.unwrap(key_id, wrapped, associated_data)
