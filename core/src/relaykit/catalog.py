"""Providers from all plugins, gathered into one immutable, sorted catalog.

Each plugin's ``relaykit_providers`` implementation is called on its own, so an exception or
a malformed record is attributed to that plugin's distribution and the others still load.
Two plugins declaring the same provider name is not something to skip quietly (which one
would win?): it raises :class:`DuplicateProviderError`, naming both distributions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgspec

from relaykit.capabilities import STANDARD_CONTRACTS, CapabilityContract
from relaykit.errors import RelaykitError
from relaykit.plugins import PluginLoadError, describe_exception
from relaykit.providers import SLUG_PATTERN, Provider, provider_problems

if TYPE_CHECKING:
    from relaykit.plugins import RelaykitPluginManager

logger = logging.getLogger("relaykit.catalog")


class DuplicateProviderError(RelaykitError):
    """Two distributions declare the same provider name."""

    def __init__(self, name: str, first: str, second: str) -> None:
        self.name, self.distributions = name, (first, second)
        super().__init__(
            f"provider {name!r} is declared by two distributions: {first} and {second}; "
            f"uninstall one of them or disable it with RELAYKIT_DISABLED_PLUGINS"
        )


class Catalog:
    """The loaded providers, sorted by name, the capability contracts, and the problems met
    while loading them."""

    __slots__ = ("_by_name", "contracts", "distributions", "errors", "providers")

    def __init__(
        self,
        providers: tuple[Provider, ...],
        errors: tuple[PluginLoadError, ...],
        distributions: dict[str, str],
        contracts: Mapping[str, CapabilityContract] | None = None,
    ) -> None:
        self.providers = providers
        self.errors = errors
        #: capability name -> contract: the standard ones and those plugins declared
        self.contracts = MappingProxyType(dict(contracts or STANDARD_CONTRACTS))
        #: provider name -> the distribution that ships it
        self.distributions = distributions
        self._by_name = {p.name: p for p in providers}

    def get(self, name: str) -> Provider | None:
        return self._by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Provider]:
        return iter(self.providers)

    def __len__(self) -> int:
        return len(self.providers)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)


def build_catalog(pm: RelaykitPluginManager) -> Catalog:
    found: dict[str, Provider] = {}
    owners: dict[str, str] = {}
    errors: list[PluginLoadError] = list(pm.load_errors)

    def skip(distribution: str, plugin: str, error: str) -> None:
        logger.error("skipping provider from %s (%s): %s", distribution, plugin, error)
        errors.append(PluginLoadError(distribution, plugin, error))

    contracts = _collect_contracts(pm, skip)

    # pluggy lists implementations last-registered first; sort for a stable report.
    impls = sorted(pm.hook.relaykit_providers.get_hookimpls(), key=lambda impl: impl.plugin_name)
    for impl in impls:
        distribution = pm.distribution_of(impl.plugin)
        try:
            returned: Any = impl.function()
            declared = [returned] if isinstance(returned, Provider) else list(returned or ())
        except Exception as exc:
            skip(
                distribution,
                impl.plugin_name,
                f"relaykit_providers raised {describe_exception(exc)}",
            )
            continue
        for provider in declared:
            problems = provider_problems(provider, contracts)
            if problems:
                label = getattr(provider, "name", None)
                what = f"provider {label!r}" if isinstance(label, str) else "a provider"
                skip(distribution, impl.plugin_name, f"{what} is malformed: " + "; ".join(problems))
                continue
            assert isinstance(provider, Provider)
            if provider.name in found:
                raise DuplicateProviderError(provider.name, owners[provider.name], distribution)
            found[provider.name] = provider
            owners[provider.name] = distribution
    ordered = tuple(sorted(found.values(), key=lambda p: p.name))
    return Catalog(ordered, tuple(errors), owners, contracts)


def _collect_contracts(
    pm: RelaykitPluginManager, skip: Callable[[str, str, str], None]
) -> dict[str, CapabilityContract]:
    contracts = dict(STANDARD_CONTRACTS)
    owners: dict[str, str] = {}
    for impl in sorted(pm.hook.relaykit_capabilities.get_hookimpls(), key=lambda i: i.plugin_name):
        distribution = pm.distribution_of(impl.plugin)
        try:
            declared: Any = impl.function()
            items = [declared] if isinstance(declared, CapabilityContract) else list(declared or ())
        except Exception as exc:
            skip(
                distribution,
                impl.plugin_name,
                f"relaykit_capabilities raised {describe_exception(exc)}",
            )
            continue
        for contract in items:
            problem = _contract_problem(contract)
            if problem is None and contract.name in contracts:
                first = owners.get(contract.name, "relaykit (standard)")
                problem = f"capability {contract.name!r} is already declared by {first}"
            if problem is not None:
                skip(distribution, impl.plugin_name, problem)
                continue
            contracts[contract.name] = contract
            owners[contract.name] = distribution
    return contracts


def _contract_problem(contract: object) -> str | None:
    if not isinstance(contract, CapabilityContract):
        return f"expected a CapabilityContract, got {type(contract).__name__}"
    if not SLUG_PATTERN.match(contract.name):
        return f"capability {contract.name!r} is not a slug"
    for side in ("input", "output"):
        kind = getattr(contract, side)
        if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
            return f"capability {contract.name!r}: {side} must be a msgspec.Struct class"
    return None
