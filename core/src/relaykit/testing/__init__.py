"""Test helpers for relaykit and for third-party provider authors (``relaykit[testing]``).

* :mod:`relaykit.testing.http`: run a provider's callables against a fake of its HTTP API
  (an ``httpx.MockTransport`` handler), a local server that never answers, or a closed port;
* :mod:`relaykit.testing.contract`: :class:`VerifierContractTests`, the checks every
  provider's verifier must pass;
* :mod:`relaykit.testing.operation_contract`: :class:`OperationContractTests`, the checks
  every operation handler must pass, one class per concern (refusals, throttling, transport,
  success bodies, secrets);
* :mod:`relaykit.testing.provider_contract`: :class:`ProviderContractTests`, both of those
  and everything else relaykit requires of a provider package, loaded through its entry
  point. Subclass it in the package's tests (``relaykit new-provider`` writes one);
* :mod:`relaykit.testing.webhook_contract`: :class:`WebhookContractTests`, the checks every
  provider's webhook scheme must pass (signatures, tampering, staleness, dedupe keys);
* :mod:`relaykit.testing.key_provider_contract`: :class:`KeyProviderContractTests`, the
  checks every key provider (the local keyring, a KMS plugin) must pass: round trips,
  refusals as ``CredentialsUnreadable`` or ``KeyUnavailable``, rotation, threads, secrecy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relaykit.testing.contract import VerifierContractTests
    from relaykit.testing.http import (
        basic_auth,
        closed_port_url,
        recording,
        run_handler,
        run_recorded,
        run_verification,
        silent_server,
    )
    from relaykit.testing.key_provider_contract import KeyProviderContractTests
    from relaykit.testing.operation_contract import (
        OperationContractTests,
        OperationRefusalTests,
        OperationSecretTests,
        OperationSuccessTests,
        OperationThrottlingTests,
        OperationTransportTests,
    )
    from relaykit.testing.provider_contract import ProviderContractTests
    from relaykit.testing.webhook_contract import WebhookContractTests

#: where each name lives. Imported on first use (PEP 562), so that the helpers that need no
#: pytest (``relaykit.testing.standin``, ``.http``, ``.databases``: the benchmarks use them)
#: import without it; the contract classes import pytest.
_HOMES = {
    "VerifierContractTests": "contract",
    "basic_auth": "http",
    "closed_port_url": "http",
    "recording": "http",
    "run_handler": "http",
    "run_recorded": "http",
    "run_verification": "http",
    "silent_server": "http",
    "KeyProviderContractTests": "key_provider_contract",
    "OperationContractTests": "operation_contract",
    "OperationRefusalTests": "operation_contract",
    "OperationSecretTests": "operation_contract",
    "OperationSuccessTests": "operation_contract",
    "OperationThrottlingTests": "operation_contract",
    "OperationTransportTests": "operation_contract",
    "ProviderContractTests": "provider_contract",
    "WebhookContractTests": "webhook_contract",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'relaykit.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"relaykit.testing.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "KeyProviderContractTests",
    "OperationContractTests",
    "OperationRefusalTests",
    "OperationSecretTests",
    "OperationSuccessTests",
    "OperationThrottlingTests",
    "OperationTransportTests",
    "ProviderContractTests",
    "VerifierContractTests",
    "WebhookContractTests",
    "basic_auth",
    "closed_port_url",
    "recording",
    "run_handler",
    "run_recorded",
    "run_verification",
    "silent_server",
]
