"""The records a provider plugin hands to relaykit.

A plugin returns :class:`Provider` records from its ``relaykit_providers`` hook. A record is
frozen and holds plain data (name, category, capabilities, credential schema) plus the
callables that talk to the provider (its verifier). The API view of a provider is built from
the data alone (:func:`Provider.describe`); callables never reach the wire.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from relaykit.webhooks import WebhookScheme
from relaykit.wire import CredentialFieldInfo

if TYPE_CHECKING:
    from relaykit.operations import OperationHandler
    from relaykit.provider_http import ProviderContext
    from relaykit.verification import VerificationResult

#: Provider names, capability names, categories and credential field names are slugs:
#: lowercase ASCII letters, digits and underscores, starting with a letter.
SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

#: The categories relaykit's own API filters by. A plugin may use another slug.
STANDARD_CATEGORIES = ("communication", "payment")

FieldType = Literal["string", "integer", "boolean"]

#: Plain credential values as a verifier or handler receives them, unsealed, in memory only.
Credentials = Mapping[str, Any]

Verifier = Callable[["Credentials", "ProviderContext"], Awaitable["VerificationResult"]]


#: A credential value that travels in an HTTP header (an API key in ``Authorization``, the
#: user and password of HTTP Basic auth): printable ASCII, no space. A value with other
#: characters can never be sent, so the API refuses it (422) instead of the provider call
#: failing on every try. Use it, or put ``[\x21-\x7e]`` in a field's own pattern.
HEADER_SAFE_PATTERN = r"^[\x21-\x7e]+$"


class CredentialField(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One field of a provider's credential schema.

    ``sensitive`` fields are sealed at rest and always masked (``null``) in responses; the
    others are stored and shown as they are. ``pattern``, ``min_length`` and ``max_length``
    are validation hints the API applies to string values.

    Example:
        ``CredentialField(sensitive=True, description="Secret API key", pattern=r"^sk_")``
    """

    type: FieldType = "string"
    sensitive: bool = False
    required: bool = True
    description: str | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None


class Provider(msgspec.Struct, frozen=True, kw_only=True):
    """A provider as a plugin declares it.

    Attributes:
        name: the provider's slug, unique across all installed plugins (``stripe``).
        display_name: the name people read (``Stripe``).
        category: ``payment``, ``communication`` or another slug.
        capabilities: the capability names the provider can serve (``send_sms``).
        credential_schema: credential field name -> :class:`CredentialField`.
        api_base: the provider API's base URL; ``RELAYKIT_<NAME>_API_BASE`` overrides it.
        verify: ``async (credentials, ctx) -> VerificationResult``; makes the provider's
            cheapest authenticated read. It may raise ``httpx`` transport errors: the core
            classifies them (see :func:`relaykit.verification.run_verifier`).
        operations: capability name -> ``async (payload, credentials, ctx) ->
            OperationResult`` (see :mod:`relaykit.operations`); one for every capability.
        webhooks: how the provider's webhooks are checked and read
            (:class:`relaykit.webhooks.WebhookScheme`); ``None`` when it sends none.
    """

    name: str
    display_name: str
    category: str
    capabilities: tuple[str, ...]
    credential_schema: Mapping[str, CredentialField]
    api_base: str
    verify: Verifier
    operations: Mapping[str, OperationHandler] = msgspec.field(default_factory=dict)
    webhooks: WebhookScheme | None = None

    def __post_init__(self) -> None:
        # Freeze the mapping so a record shared by the catalog cannot be changed in place.
        if not isinstance(self.credential_schema, MappingProxyType):
            msgspec.structs.force_setattr(
                self, "credential_schema", MappingProxyType(dict(self.credential_schema))
            )
        if not isinstance(self.operations, MappingProxyType):
            msgspec.structs.force_setattr(
                self, "operations", MappingProxyType(dict(self.operations))
            )
        if not isinstance(self.capabilities, tuple):
            msgspec.structs.force_setattr(self, "capabilities", tuple(self.capabilities))

    @property
    def sensitive_fields(self) -> frozenset[str]:
        return frozenset(k for k, f in self.credential_schema.items() if f.sensitive)

    def describe(self) -> ProviderInfo:
        """The provider as plain data, the shape the API shows."""
        return ProviderInfo(
            name=self.name,
            display_name=self.display_name,
            category=self.category,
            capabilities=list(self.capabilities),
            credential_schema={
                k: CredentialFieldInfo(type=f.type, sensitive=f.sensitive, required=f.required)
                for k, f in self.credential_schema.items()
            },
        )


class ProviderInfo(msgspec.Struct, frozen=True):
    name: str
    display_name: str
    category: str
    capabilities: list[str]
    credential_schema: dict[str, CredentialFieldInfo]


def provider_problems(provider: object, known_capabilities: Collection[str] = ()) -> list[str]:
    """Everything wrong with what a plugin returned as a provider, as readable sentences.

    ``known_capabilities`` are the capabilities with a contract (the standard ones and those
    plugins declare); a provider may only offer those, with a handler for each.

    An empty list means the record is well-formed. The catalog skips a provider with
    problems and reports them against the plugin's distribution.
    """
    if not isinstance(provider, Provider):
        return [f"expected a relaykit.Provider, got {type(provider).__name__}"]
    problems: list[str] = []

    def check_slug(what: str, value: object) -> None:
        if not isinstance(value, str) or not SLUG_PATTERN.match(value):
            problems.append(f"{what} {value!r} is not a slug (lowercase letters, digits, _)")

    check_slug("name", provider.name)
    check_slug("category", provider.category)
    if not isinstance(provider.display_name, str) or not provider.display_name.strip():
        problems.append("display_name must be a non-empty string")
    if not provider.capabilities:
        problems.append("capabilities must name at least one capability")
    for capability in provider.capabilities:
        check_slug("capability", capability)
        if known_capabilities and capability not in known_capabilities:
            problems.append(
                f"capability {capability!r} has no contract: declare it with relaykit_capabilities"
            )
        handler = provider.operations.get(capability)
        if not callable(handler):
            problems.append(f"capability {capability!r} has no operation handler")
        elif not _is_async(handler):
            problems.append(f"the operation handler for {capability!r} must be async")
    for capability in provider.operations:
        if capability not in provider.capabilities:
            problems.append(f"operation handler for undeclared capability {capability!r}")
    if len(set(provider.capabilities)) != len(provider.capabilities):
        problems.append("capabilities are listed more than once")
    if not provider.credential_schema:
        problems.append("credential_schema must declare at least one field")
    for field_name, spec in provider.credential_schema.items():
        check_slug("credential field", field_name)
        if not isinstance(spec, CredentialField):
            problems.append(f"credential field {field_name!r} is not a CredentialField")
            continue
        if spec.pattern is not None:
            try:
                re.compile(spec.pattern)
            except re.error as exc:
                problems.append(f"credential field {field_name!r} has a bad pattern: {exc}")
    if not isinstance(provider.api_base, str) or not provider.api_base.startswith(
        ("http://", "https://")
    ):
        problems.append("api_base must be an http(s) URL")
    if not callable(provider.verify) or not _is_async(provider.verify):
        problems.append("verify must be an async callable")
    problems.extend(_webhook_problems(provider))
    return problems


def _webhook_problems(provider: Provider) -> list[str]:
    """What is wrong with ``provider.webhooks``: the receiver opens ``secret_fields`` from the
    integration's credentials and calls ``receive`` on the event loop, so both must hold."""
    scheme = provider.webhooks
    if scheme is None:
        return []
    if not isinstance(scheme, WebhookScheme):
        return [f"webhooks must be a relaykit.WebhookScheme, got {type(scheme).__name__}"]
    problems: list[str] = []
    if not callable(scheme.receive) or _is_async(scheme.receive):
        # An async receive would hand the receiver a coroutine instead of events.
        problems.append("webhooks.receive must be a plain (not async) callable")
    fields = scheme.secret_fields
    if not isinstance(fields, tuple) or not fields:
        problems.append("webhooks.secret_fields must name the credential fields the check needs")
        return problems
    for name in fields:
        if name not in provider.credential_schema:
            problems.append(
                f"webhooks.secret_fields names {name!r}, which is not a credential field"
            )
        elif not provider.credential_schema[name].sensitive:
            problems.append(f"webhooks.secret_fields names {name!r}, which is not sensitive")
    return problems


def _is_async(fn: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )
