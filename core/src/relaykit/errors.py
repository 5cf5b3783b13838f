"""relaykit's error hierarchy; the server maps each class to the contract's envelope once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class RelaykitError(Exception):
    """Base of every error relaykit raises on purpose."""


class NotFoundError(RelaykitError):
    """The thing does not exist for this tenant (another tenant's thing is not found either)."""


class ConflictError(RelaykitError):
    """The request is well-formed but the current state forbids it (a transition, say)."""

    code = "conflict"


class AuthenticationError(RelaykitError):
    """No valid bearer token."""


class ValidationError(RelaykitError):
    """Input that does not satisfy the contract; ``errors`` is keyed by field path."""

    def __init__(
        self,
        errors: Mapping[str, Sequence[str]],
        message: str = "The given data was invalid.",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = {key: list(value) for key, value in errors.items()}


class ConfigurationError(RelaykitError):
    """relaykit's own settings are unusable (a bad RELAYKIT_* value)."""
