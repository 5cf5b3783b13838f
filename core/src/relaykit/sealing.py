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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio.to_thread
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relaykit.errors import RelaykitError
from relaykit.ids import isoformat_z, new_id
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


def seal_credentials(
    values: Mapping[str, Any], context: SealContext, key_provider: KeyProvider
) -> bytes:
    """Seal ``values`` (the sensitive fields) for ``context``; returns the stored bytes."""
    register_secrets(values.values())
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
    aad = context.associated_data()
    data_key = _provider_for(blob, key_provider).unwrap(blob.key_id, blob.wrapped_key, aad)
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
    data_key = _provider_for(blob, key_provider).unwrap(blob.key_id, blob.wrapped_key, aad)
    key_id, wrapped = key_provider.wrap(data_key, aad)
    return msgspec.msgpack.encode(
        msgspec.structs.replace(
            blob, key_provider=key_provider.name, key_id=key_id, wrapped_key=wrapped
        )
    )


class KeySet:
    """The key provider relaykit wraps with (``RELAYKIT_KEY_PROVIDER``), plus every other
    installed one, so blobs wrapped by a provider you are moving away from still open (and
    ``relaykit keys rewrap`` can move them)."""

    def __init__(
        self, primary: KeyProvider, others: Mapping[str, KeyProvider] | None = None
    ) -> None:
        self.primary = primary
        self.name = primary.name
        self._others = dict(others or {})

    @property
    def primary_key_id(self) -> str:
        return self.primary.primary_key_id

    def provider_named(self, name: str) -> KeyProvider | None:
        return self.primary if name == self.primary.name else self._others.get(name)

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        return self.primary.wrap(data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        return self.primary.unwrap(key_id, wrapped, associated_data)


# -- the local keyring ------------------------------------------------------------------------


def _new_key_entry() -> _KeyEntry:
    return _KeyEntry(
        id=new_id(),
        created_at=isoformat_z(dt.datetime.now(dt.UTC)) or "",
        material=base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
    )


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
    in_process = True  # AES key wrap in memory; the file is read only when it changes

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, AESGCM] = {}
        self._created: dict[str, str] = {}
        self._primary = ""
        self._stamp: tuple[int, int] | None = None
        self.reload()

    @property
    def primary_key_id(self) -> str:
        self._reload_if_changed()
        return self._primary

    def _reload_if_changed(self) -> None:
        """Pick up a rotation made by another process: one stat() per call."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return
        if (stat.st_ino, stat.st_mtime_ns) != self._stamp:
            self.reload()

    @classmethod
    def in_home(cls, home: Path) -> LocalKeyring:
        return cls(home / cls.FILE_NAME)

    def reload(self) -> None:
        if not self.path.exists():
            self._create()
        data = self._read()
        stat = self.path.stat()
        keys: dict[str, AESGCM] = {}
        for entry in data.keys:
            material = base64.b64decode(entry.material)
            if len(material) != _KEY_BYTES:
                raise SealError(f"key {entry.id} in {self.path} is not a 256-bit key")
            keys[entry.id] = AESGCM(material)
        if data.primary not in keys:
            raise SealError(f"the keyring's primary key {data.primary} is missing from it")
        self._keys = keys
        self._created = {entry.id: entry.created_at for entry in data.keys}
        self._primary = data.primary
        self._stamp = (stat.st_ino, stat.st_mtime_ns)

    def _read(self) -> _KeyringFile:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=_KeyringFile)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise SealError(f"the keyring {self.path} is unreadable") from None

    @property
    def key_ids(self) -> tuple[str, ...]:
        self._reload_if_changed()
        return tuple(self._keys)

    def created_at(self, key_id: str) -> str:
        return self._created.get(key_id, "")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_KeyringFile]:
        """The keyring file, read under an exclusive lock (rotate and retire serialize)."""
        import fcntl

        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._read()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _replace(self, data: _KeyringFile) -> None:
        """Write the whole file anew and rename it into place: readers see old or new."""
        content = json.dumps(msgspec.to_builtins(data), indent=2).encode()
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{new_id()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def rotate(self) -> str:
        """Add a new key and make it the primary; older keys still unwrap. Returns its id."""
        with self._locked() as data:
            entry = _new_key_entry()
            self._replace(_KeyringFile(format=1, primary=entry.id, keys=[*data.keys, entry]))
        self.reload()
        logger.info("keyring %s: new primary key %s", self.path, entry.id)
        return entry.id

    def retire(self, key_id: str) -> None:
        """Remove a key that is not the primary (callers check no blob still uses it)."""
        with self._locked() as data:
            if key_id == data.primary:
                raise SealError(f"key {key_id} is the primary key: rotate first")
            if all(entry.id != key_id for entry in data.keys):
                raise SealError(f"key {key_id} is not in the keyring")
            kept = [entry for entry in data.keys if entry.id != key_id]
            self._replace(_KeyringFile(format=1, primary=data.primary, keys=kept))
        self.reload()
        logger.info("keyring %s: key %s retired", self.path, key_id)

    def _create(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        entry = _new_key_entry()
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
        primary = self.primary_key_id  # reloads if another process rotated
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return primary, nonce + self._keys[primary].encrypt(nonce, data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        kek = self._keys.get(key_id)
        if kek is None:
            self._reload_if_changed()  # a key added since we last read the file
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
