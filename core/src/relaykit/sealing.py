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
from relaykit.metrics import KEY_PROVIDER_ERRORS
from relaykit.redaction import register_secrets

T = TypeVar("T")

logger = logging.getLogger("relaykit.sealing")

BLOB_FORMAT = 1
_NONCE_BYTES = 12
_KEY_BYTES = 32


class SealError(RelaykitError):
    """Sealed credentials could not be opened. The message never holds key or plaintext."""


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

    ``name`` is recorded in every blob it wraps; ``primary_key_id`` names the key that wraps
    new data keys (blobs under another key are what ``relaykit keys rewrap`` moves).

    A provider may set ``in_process = True`` when ``wrap`` and ``unwrap`` do no network I/O
    (the local keyring): relaykit then seals and opens on the event loop. Without it (a KMS,
    Vault) they always run in a worker thread. See :func:`runs_in_process`.
    """

    name: str

    @property
    def primary_key_id(self) -> str: ...

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        """Wrap ``data_key`` with the current primary KEK; return ``(key_id, wrapped)``."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        """Unwrap a data key wrapped by KEK ``key_id``; raise :class:`SealError` if it cannot."""
        ...


def runs_in_process(key_provider: KeyProvider) -> bool:
    """Whether ``key_provider`` says its wrap and unwrap do no network I/O (``in_process``),
    so they may run on an event loop."""
    return getattr(key_provider, "in_process", False) is True


async def call_with_key_provider(key_provider: KeyProvider, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, which wraps or unwraps through ``key_provider``: on the event loop for
    an in-process provider (:func:`runs_in_process`), else in a worker thread."""
    if runs_in_process(key_provider):
        return fn(*args)
    return await anyio.to_thread.run_sync(fn, *args)


async def seal(values: Mapping[str, Any], context: SealContext, key_provider: KeyProvider) -> bytes:
    """:func:`seal_credentials` from the event loop (a remote key provider in a thread)."""
    return await call_with_key_provider(
        key_provider, seal_credentials, values, context, key_provider
    )


async def unseal(sealed: bytes, context: SealContext, key_provider: KeyProvider) -> dict[str, Any]:
    """:func:`open_credentials` from the event loop (a remote key provider in a thread)."""
    return await call_with_key_provider(
        key_provider, open_credentials, sealed, context, key_provider
    )


def seal_credentials(
    values: Mapping[str, Any], context: SealContext, key_provider: KeyProvider
) -> bytes:
    """Seal ``values`` (the sensitive fields) for ``context``; returns the stored bytes."""
    register_secrets(values.values())
    aad = context.associated_data()
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, msgspec.json.encode(dict(values)), aad)
    key_id, wrapped = _wrap(key_provider, data_key, aad)
    blob = SealedBlob(BLOB_FORMAT, key_provider.name, key_id, wrapped, nonce, ciphertext)
    logger.debug(
        "sealed %d credential fields (%s) for integration %s under %s key %s",
        len(values),
        ",".join(sorted(values)),
        context.integration_id,
        key_provider.name,
        key_id,
    )
    return msgspec.msgpack.encode(blob)


def read_blob(sealed: bytes) -> SealedBlob:
    """Decode the stored form without opening it (for key status and rewrap)."""
    try:
        raw = msgspec.msgpack.decode(sealed)
    except (msgspec.DecodeError, ValueError):  # ValueError: UnicodeDecodeError in a str
        raise SealError("sealed credentials are corrupt: they cannot be decoded") from None
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], int):
        raise SealError("sealed credentials are corrupt: unexpected structure")
    if raw[0] != BLOB_FORMAT:
        raise SealError(f"sealed credentials use unknown format version {raw[0]}")
    try:
        return msgspec.msgpack.decode(sealed, type=SealedBlob)
    except (msgspec.ValidationError, ValueError):
        raise SealError("sealed credentials are corrupt: unexpected structure") from None


def open_credentials(
    sealed: bytes, context: SealContext, key_provider: KeyProvider
) -> dict[str, Any]:
    """Open a blob made by :func:`seal_credentials` for the same ``context``."""
    blob = read_blob(sealed)
    aad = context.associated_data()
    data_key = _unwrap(_provider_for(blob, key_provider), blob, aad)
    try:
        plaintext = AESGCM(data_key).decrypt(blob.nonce, blob.ciphertext, aad)
    except (InvalidTag, ValueError):
        raise SealError(
            "sealed credentials failed authentication: they belong to another integration "
            "or were altered"
        ) from None
    values = msgspec.json.decode(plaintext)  # authenticated above: it is what was sealed
    if not isinstance(values, dict):
        raise SealError("sealed credentials are corrupt: unexpected content")
    register_secrets(values.values())
    return values


def _wrap(key_provider: KeyProvider, data_key: bytes, aad: bytes) -> tuple[str, bytes]:
    """``key_provider.wrap``, its failures counted (``relaykit_key_provider_errors_total``)."""
    try:
        return key_provider.wrap(data_key, aad)
    except Exception:
        KEY_PROVIDER_ERRORS.labels(key_provider.name, "wrap").inc()
        raise


def _unwrap(key_provider: KeyProvider, blob: SealedBlob, aad: bytes) -> bytes:
    """``key_provider.unwrap`` of the blob's data key, its failures counted (a key it does
    not hold, a tampered wrap, a KMS unreachable)."""
    try:
        return key_provider.unwrap(blob.key_id, blob.wrapped_key, aad)
    except Exception:
        KEY_PROVIDER_ERRORS.labels(key_provider.name, "unwrap").inc()
        raise


def _provider_for(blob: SealedBlob, key_provider: KeyProvider) -> KeyProvider:
    if blob.key_provider == key_provider.name:
        return key_provider
    named = getattr(key_provider, "provider_named", None)
    other = named(blob.key_provider) if named is not None else None
    if other is None:
        raise SealError(
            f"sealed credentials were wrapped by key provider {blob.key_provider!r}, "
            f"not {key_provider.name!r}"
        )
    return other


def rewrap(sealed: bytes, context: SealContext, key_provider: KeyProvider) -> bytes | None:
    """The blob with its data key wrapped by the primary key, or ``None`` if it already is.

    Only the data key is unwrapped and wrapped again: the fields' ciphertext is untouched.
    """
    blob = read_blob(sealed)
    if blob.key_provider == key_provider.name and blob.key_id == key_provider.primary_key_id:
        return None
    aad = context.associated_data()
    data_key = _unwrap(_provider_for(blob, key_provider), blob, aad)
    key_id, wrapped = _wrap(key_provider, data_key, aad)
    return msgspec.msgpack.encode(
        msgspec.structs.replace(
            blob, key_provider=key_provider.name, key_id=key_id, wrapped_key=wrapped
        )
    )
