"""The AWS KMS key provider for relaykit (entry point ``relaykit: aws-kms``).

Installed, it offers the key provider ``aws-kms``; ``RELAYKIT_KEY_PROVIDER=aws-kms`` makes it
the one that wraps new data keys. Installed but not selected, it still unwraps what it
wrapped. Settings, IAM permissions and rotation: the distribution's README.
"""

from __future__ import annotations

from collections.abc import Iterator

from relaykit import hookimpl
from relaykit.keys import KeyProviderSpec
from relaykit.settings import Settings
from relaykit_aws_kms.cache import UnwrapCache
from relaykit_aws_kms.provider import NAME, AwsKms, encryption_context, refusal

__all__ = ["NAME", "AwsKms", "UnwrapCache", "encryption_context", "refusal"]


def make_provider(settings: Settings) -> AwsKms:
    """The provider relaykit makes at start-up: its own ``RELAYKIT_AWS_*`` variables."""
    return AwsKms.from_env()


@hookimpl
def relaykit_key_providers() -> Iterator[KeyProviderSpec]:
    yield KeyProviderSpec(name=NAME, factory=make_provider)
