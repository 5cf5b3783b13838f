"""The local keyring: versioned key-encryption keys in a JSON file in ``RELAYKIT_HOME``.

The built-in key provider (``RELAYKIT_KEY_PROVIDER=local``, the default). The file
(``keyring.json``, mode 0600) is created on first use, atomically; the primary key wraps
new data keys and older keys still unwrap until ``relaykit keys retire`` removes them.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relaykit.ids import isoformat_z, new_id
from relaykit.sealing import SealError

logger = logging.getLogger("relaykit.keys")

_NONCE_BYTES = 12
_KEY_BYTES = 32


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
