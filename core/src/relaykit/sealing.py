"""Credentials at rest: envelope encryption.

Each integration's sensitive credential fields are sealed together with AES-256-GCM under a
data key of their own; the data key is wrapped (AES-256-GCM again) by a key-encryption key
(KEK) from a :class:`KeyProvider`. The associated data names the tenant, the integration and
the provider, and is bound into both layers, so a sealed blob copied onto another row fails
to open. The blob records its format version, the key provider and the KEK id that wrapped
its data key, so rotating the KEK only rewraps data keys (see docs/security.md).

The default key provider is :class:`LocalKeyring`: versioned keys in a JSON file in
``RELAYKIT_HOME`` (mode 0600), created on first start.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relaykit.errors import RelaykitError
from relaykit.ids import isoformat_z, new_id

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
    """Wraps and unwraps data keys with key-encryption keys it holds (a keyring, a KMS)."""

    name: str

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        """Wrap ``data_key`` with the current primary KEK; return ``(key_id, wrapped)``."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        """Unwrap a data key wrapped by KEK ``key_id``; raise :class:`SealError` if it cannot."""
        ...


def seal_credentials(
    values: Mapping[str, Any], context: SealContext, key_provider: KeyProvider
) -> bytes:
    """Seal ``values`` (the sensitive fields) for ``context``; returns the stored bytes."""
    aad = context.associated_data()
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, msgspec.json.encode(dict(values)), aad)
    key_id, wrapped = key_provider.wrap(data_key, aad)
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
    if blob.key_provider != key_provider.name:
        raise SealError(
            f"sealed credentials were wrapped by key provider {blob.key_provider!r}, "
            f"not {key_provider.name!r}"
        )
    aad = context.associated_data()
    data_key = key_provider.unwrap(blob.key_id, blob.wrapped_key, aad)
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
    return values


# -- the local keyring ------------------------------------------------------------------------


class _KeyEntry(msgspec.Struct, frozen=True):
    id: str
    created_at: str
    material: str  # base64 of 32 bytes


class _KeyringFile(msgspec.Struct, frozen=True):
    format: int
    primary: str
    keys: list[_KeyEntry]


class LocalKeyring:
    """Versioned KEKs in ``<home>/keyring.json`` (mode 0600); the primary wraps new data keys.

    The file is created on first use, atomically: two processes starting at once agree on
    one keyring (the second finds the first's file).
    """

    name = "local"
    FILE_NAME = "keyring.json"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, AESGCM] = {}
        self.primary_key_id = ""
        self.reload()

    @classmethod
    def in_home(cls, home: Path) -> LocalKeyring:
        return cls(home / cls.FILE_NAME)

    def reload(self) -> None:
        if not self.path.exists():
            self._create()
        try:
            data = msgspec.json.decode(self.path.read_bytes(), type=_KeyringFile)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise SealError(f"the keyring {self.path} is unreadable") from None
        keys: dict[str, AESGCM] = {}
        for entry in data.keys:
            material = base64.b64decode(entry.material)
            if len(material) != _KEY_BYTES:
                raise SealError(f"key {entry.id} in {self.path} is not a 256-bit key")
            keys[entry.id] = AESGCM(material)
        if data.primary not in keys:
            raise SealError(f"the keyring's primary key {data.primary} is missing from it")
        self._keys = keys
        self.primary_key_id = data.primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def _create(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        entry = _KeyEntry(
            id=new_id(),
            created_at=isoformat_z(dt.datetime.now(dt.UTC)) or "",
            material=base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
        )
        content = json.dumps(
            msgspec.to_builtins(_KeyringFile(format=1, primary=entry.id, keys=[entry])), indent=2
        ).encode()
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{new_id()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            # link() fails if the keyring appeared meanwhile: then the other process's wins.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        kek = self._keys[self.primary_key_id]
        return self.primary_key_id, nonce + kek.encrypt(nonce, data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        kek = self._keys.get(key_id)
        if kek is None:
            raise SealError(f"sealed credentials were wrapped by key {key_id}, not in the keyring")
        try:
            return kek.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], associated_data)
        except (InvalidTag, ValueError):
            raise SealError(
                "sealed credentials failed authentication: they belong to another integration "
                "or were altered"
            ) from None
