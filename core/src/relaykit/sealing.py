"""Credentials at rest: envelope encryption.

Each integration's sensitive credential fields are sealed together with AES-256-GCM under a
data key of their own; the data key is wrapped (AES-256-GCM again) by a key-encryption key
(KEK) from a :class:`KeyProvider`. The associated data names the tenant, the integration and
the provider, and is bound into both layers, so a sealed blob copied onto another row fails
to open. The blob records its format version, the key provider and the KEK id that wrapped
its data key, so rotating the KEK only rewraps data keys (see docs/security.md).

Key providers (the local keyring, KMS plugins), how relaykit loads them and rewrapping
rows onto a new key are in :mod:`relaykit.keys`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import anyio.to_thread
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relaykit.errors import RelaykitError
from relaykit.redaction import register_secrets

T = TypeVar("T")

logger = logging.getLogger("relaykit.sealing")

BLOB_FORMAT = 1
_NONCE_BYTES = 12
_KEY_BYTES = 32


class SealError(RelaykitError):
    """Sealed credentials could not be opened. The message never holds key or plaintext."""


class KeyUnavailable(SealError):
    """The key provider cannot use the key now: unreachable, a key it does not hold, access
    denied, a disabled key. The operator's fault, not the tenant's: an integration whose
    credentials cannot be opened for this reason is left as it is, and the work is retried
    (an operation answers 503 ``key_provider_unavailable``)."""


class CredentialsUnreadable(SealError):
    """This row's sealed credentials fail authentication or are corrupt (altered, or copied
    from another row), while the key provider works: that integration's fault. It moves to
    ``error`` until its secret is replaced."""


class SealContext(msgspec.Struct, frozen=True):
    """What a sealed blob belongs to; bound into it as associated data."""

    tenant_id: str
    integration_id: str
    provider: str

    def associated_data(self) -> bytes:
        return b"\x00".join(
            [
                b"relaykit/credentials/v1",
                self.tenant_id.encode(),
                self.integration_id.encode(),
                self.provider.encode(),
            ]
        )


class SealedBlob(msgspec.Struct, array_like=True, frozen=True):
    """The stored form (MessagePack, as a compact array)."""

    format: int
    key_provider: str
    key_id: str
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes


class KeyProvider(Protocol):
    """Wraps and unwraps data keys with key-encryption keys it holds (a keyring, a KMS).

    ``name`` is recorded in every blob it wraps. Which key wraps new data keys is not the
    provider's choice: the database records the primary key (:mod:`relaykit.keys.custody`),
    so every node seals under the same key, and the provider is handed the key id.
    ``default_key_id`` is the key to begin with on a database that records none.

    Failures are raised as :class:`KeyUnavailable` (the provider cannot use the key now) or
    :class:`CredentialsUnreadable` (the wrapped key fails authentication under the given
    associated data); any other exception is taken as :class:`KeyUnavailable`. Messages never
    hold key material.

    A provider may set ``in_process = True`` when ``wrap`` and ``unwrap`` do no network I/O
    (the local keyring): relaykit then seals and opens on the event loop. Without it (a KMS,
    Vault) they always run in a worker thread. See :func:`runs_in_process`. A provider that
    can make keys itself offers ``create_key() -> str`` (``relaykit keys rotate`` without
    ``--key-id``).
    """

    name: str

    @property
    def default_key_id(self) -> str: ...

    def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
        """Wrap ``data_key`` with KEK ``key_id``, binding ``associated_data``."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        """Unwrap a data key wrapped by KEK ``key_id`` under the same associated data."""
        ...


class Keys(Protocol):
    """What sealing needs: the provider and key new data keys are wrapped with, and every
    installed provider for unwrapping (:class:`relaykit.keys.KeySet`)."""

    @property
    def name(self) -> str: ...

    @property
    def primary_key_id(self) -> str: ...

    @property
    def in_process(self) -> bool: ...

    def in_process_for(self, key_provider: str) -> bool:
        """Whether the named provider wraps and unwraps in memory (no network I/O)."""
        ...

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        """Wrap under the primary key: ``(key_id, wrapped)``."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        """Unwrap with the primary key's provider."""
        ...

    def unwrap_from(
        self, key_provider: str, key_id: str, wrapped: bytes, associated_data: bytes
    ) -> bytes:
        """Unwrap with the named provider's key ``key_id``."""
        ...


def runs_in_process(key_provider: KeyProvider | Keys) -> bool:
    """Whether ``key_provider`` says its wrap and unwrap do no network I/O (``in_process``),
    so they may run on an event loop."""
    return getattr(key_provider, "in_process", False) is True


async def call_with_key_provider(keys: KeyProvider | Keys, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, which wraps or unwraps through ``keys``: on the event loop for an
    in-process provider (:func:`runs_in_process`), else in a worker thread."""
    if runs_in_process(keys):
        return fn(*args)
    return await anyio.to_thread.run_sync(fn, *args)


async def seal(values: Mapping[str, Any], context: SealContext, keys: Keys) -> bytes:
    """:func:`seal_credentials` from the event loop: on the loop when the primary key's
    provider works in memory (the local keyring), else in a worker thread."""
    if keys.in_process_for(keys.name):
        return seal_credentials(values, context, keys)
    return await anyio.to_thread.run_sync(seal_credentials, values, context, keys)


async def unseal(sealed: bytes, context: SealContext, keys: Keys) -> dict[str, Any]:
    """:func:`open_credentials` from the event loop: on the loop when the provider that
    wrapped this blob works in memory (the local keyring), else in a worker thread. So an
    installed KMS plugin moves only its own blobs off the loop."""
    if keys.in_process_for(read_blob(sealed).key_provider):
        return open_credentials(sealed, context, keys)
    return await anyio.to_thread.run_sync(open_credentials, sealed, context, keys)


def seal_credentials(values: Mapping[str, Any], context: SealContext, keys: Keys) -> bytes:
    """Seal ``values`` (the sensitive fields) for ``context`` under the primary key; returns
    the stored bytes. Raises :class:`KeyUnavailable` when the key provider cannot wrap."""
    register_secrets(values.values())
    aad = context.associated_data()
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, msgspec.json.encode(dict(values)), aad)
    name, key_id, wrapped = _wrap(keys, data_key, aad)
    blob = SealedBlob(BLOB_FORMAT, name, key_id, wrapped, nonce, ciphertext)
    logger.debug(
        "sealed %d credential fields (%s) for integration %s under %s key %s",
        len(values),
        ",".join(sorted(values)),
        context.integration_id,
        name,
        key_id,
    )
    return msgspec.msgpack.encode(blob)


def read_blob(sealed: bytes) -> SealedBlob:
    """Decode the stored form without opening it (for key status and rewrap)."""
    try:
        raw = msgspec.msgpack.decode(sealed)
    except (msgspec.DecodeError, ValueError):  # ValueError: UnicodeDecodeError in a str
        raise CredentialsUnreadable(
            "sealed credentials are corrupt: they cannot be decoded"
        ) from None
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], int):
        raise CredentialsUnreadable("sealed credentials are corrupt: unexpected structure")
    if raw[0] != BLOB_FORMAT:
        raise CredentialsUnreadable(
            f"sealed credentials are corrupt: unknown format version {raw[0]}"
        )
    try:
        return msgspec.msgpack.decode(sealed, type=SealedBlob)
    except (msgspec.ValidationError, ValueError):
        raise CredentialsUnreadable(
            "sealed credentials are corrupt: unexpected structure"
        ) from None


def open_credentials(sealed: bytes, context: SealContext, keys: Keys) -> dict[str, Any]:
    """Open a blob made by :func:`seal_credentials` for the same ``context``.

    Raises :class:`CredentialsUnreadable` (this blob's fault) or :class:`KeyUnavailable`
    (the key provider's)."""
    blob = read_blob(sealed)
    aad = context.associated_data()
    data_key = keys.unwrap_from(blob.key_provider, blob.key_id, blob.wrapped_key, aad)
    try:
        plaintext = AESGCM(data_key).decrypt(blob.nonce, blob.ciphertext, aad)
    except (InvalidTag, ValueError):
        raise CredentialsUnreadable(
            "sealed credentials failed authentication: they belong to another integration "
            "or were altered"
        ) from None
    values = msgspec.json.decode(plaintext)  # authenticated above: it is what was sealed
    if not isinstance(values, dict):
        raise CredentialsUnreadable("sealed credentials are corrupt: unexpected content")
    register_secrets(values.values())
    return values


def rewrap(sealed: bytes, context: SealContext, keys: Keys) -> bytes | None:
    """The blob with its data key wrapped by the primary key, or ``None`` if it already is.

    Only the data key is unwrapped and wrapped again: the fields' ciphertext is untouched.
    """
    blob = read_blob(sealed)
    if blob.key_provider == keys.name and blob.key_id == keys.primary_key_id:
        return None
    aad = context.associated_data()
    data_key = keys.unwrap_from(blob.key_provider, blob.key_id, blob.wrapped_key, aad)
    name, key_id, wrapped = _wrap(keys, data_key, aad)
    return msgspec.msgpack.encode(
        msgspec.structs.replace(blob, key_provider=name, key_id=key_id, wrapped_key=wrapped)
    )


def _wrap(keys: Keys, data_key: bytes, aad: bytes) -> tuple[str, str, bytes]:
    """``(key provider, key id, wrapped)`` under the primary key. The primary may change
    while a remote provider wraps in a thread (the node saw a rotation): the provider's name
    is read on both sides of the wrap, so a blob never names one provider with another's key
    id."""
    for _ in range(3):
        name = keys.name
        key_id, wrapped = keys.wrap(data_key, aad)
        if keys.name == name:
            return name, key_id, wrapped
    raise KeyUnavailable("the primary key kept changing while sealing: try again")
