"""relaykit: the provider SDK and the engine behind the relaykit service.

What a provider plugin needs is importable from here::

    from relaykit import CredentialField, Provider, VerificationResult, hookimpl
"""

from relaykit import capabilities
from relaykit.hookspecs import hookimpl
from relaykit.providers import CredentialField, Credentials, Provider
from relaykit.verification import (
    Outcome,
    ProviderContext,
    VerificationResult,
    classify_response,
    json_body,
)

__version__ = "0.1.0"

__all__ = [
    "CredentialField",
    "Credentials",
    "Outcome",
    "Provider",
    "ProviderContext",
    "VerificationResult",
    "__version__",
    "capabilities",
    "classify_response",
    "hookimpl",
    "json_body",
]
