"""The plugin manager: loads every ``relaykit`` entry point without letting one break the rest.

pluggy's own ``load_setuptools_entrypoints`` stops at the first entry point that fails to
import (simonw/llm#1280 is that bug in the wild). Here each entry point is loaded in its own
``try``; a failure is logged, recorded as a :class:`PluginLoadError` naming the distribution,
and loading goes on. ``relaykit providers --check`` shows what was recorded.

The plugin switches (disable, strict, trace) are settings: see docs/settings.md.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import pluggy

from relaykit import hookspecs
from relaykit.settings import read_setting

if TYPE_CHECKING:
    import click

    from relaykit.catalog import Catalog

logger = logging.getLogger("relaykit.plugins")


class PluginLoadError(msgspec.Struct, frozen=True):
    """A plugin (or one of its providers) that was skipped, and why."""

    distribution: str
    plugin: str
    error: str


class RelaykitPluginManager(pluggy.PluginManager):
    """pluggy's manager plus the load errors and the distribution behind each plugin."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs.RelaykitSpecs)
        self.load_errors: list[PluginLoadError] = []
        self._distributions: dict[str, str] = {}
        self._catalog: Catalog | None = None

    def register_plugin(self, plugin: Any, name: str, distribution: str | None = None) -> None:
        """Register an in-process plugin (tests, embedding) under ``name``."""
        self.register(plugin, name=name)
        self._distributions[name] = distribution or name
        self._catalog = None

    def distribution_of(self, plugin: object) -> str:
        name = self.get_name(plugin) or repr(plugin)
        return self._distributions.get(name, name)

    def load_entrypoints(
        self,
        *,
        group: str = hookspecs.ENTRY_POINT_GROUP,
        disabled: Iterable[str] = (),
        strict: bool = False,
    ) -> None:
        """Load and register every entry point of ``group``, each on its own."""
        blocked = {name.strip() for name in disabled if name.strip()}
        for entry_point in sorted(
            importlib.metadata.entry_points(group=group), key=lambda ep: ep.name
        ):
            distribution = entry_point.dist.name if entry_point.dist else entry_point.name
            if entry_point.name in blocked or distribution in blocked:
                logger.info("plugin %s (%s) is disabled", entry_point.name, distribution)
                continue
            if self.get_plugin(entry_point.name) is not None or self.is_blocked(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
                self.register(plugin, name=entry_point.name)
            except Exception as exc:
                if strict:
                    raise
                self._record(
                    distribution, entry_point.name, f"failed to load: {describe_exception(exc)}"
                )
                continue
            self._distributions[entry_point.name] = distribution
        self._catalog = None
        # A hook implementation whose name matches no spec is almost always a typo.
        try:
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            if strict:
                raise
            plugin_name = self.get_name(exc.plugin) or "?"
            self._record(self.distribution_of(exc.plugin), plugin_name, str(exc))
            self.unregister(exc.plugin)

    def _record(self, distribution: str, plugin: str, error: str) -> None:
        logger.error("skipping plugin %s from %s: %s", plugin, distribution, error)
        self.load_errors.append(PluginLoadError(distribution, plugin, error))

    def catalog(self) -> Catalog:
        """The providers of every registered plugin, built once (see :mod:`relaykit.catalog`)."""
        if self._catalog is None:
            from relaykit.catalog import build_catalog

            self._catalog = build_catalog(self)
        return self._catalog

    def add_cli_commands(self, cli: click.Group) -> None:
        """Let each plugin add its commands; a plugin that fails here is reported, not fatal."""
        for impl in self.hook.relaykit_cli_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self._record(
                    self.distribution_of(impl.plugin),
                    impl.plugin_name,
                    f"relaykit_cli_commands raised {describe_exception(exc)}",
                )


def describe_exception(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    plugins: Iterable[tuple[str, Any]] = (),
    environ: Mapping[str, str] | None = None,
) -> RelaykitPluginManager:
    """A new, uncached plugin manager; tests call this directly.

    Args:
        load_entrypoints: load the installed ``relaykit`` entry points.
        plugins: extra ``(name, plugin)`` pairs to register in-process.
        environ: where to read the plugin settings (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    pm = RelaykitPluginManager()
    if read_setting("RELAYKIT_TRACE_HOOKS", env):
        pm.trace.root.setwriter(logger.debug)
        pm.enable_tracing()
    for name, plugin in plugins:
        pm.register_plugin(plugin, name)
    if load_entrypoints:
        pm.load_entrypoints(
            disabled=read_setting("RELAYKIT_DISABLED_PLUGINS", env),
            strict=read_setting("RELAYKIT_STRICT_PLUGINS", env),
        )
    return pm


@functools.cache
def get_plugin_manager() -> RelaykitPluginManager:
    """The process's plugin manager, loaded from entry points once."""
    return make_plugin_manager()
