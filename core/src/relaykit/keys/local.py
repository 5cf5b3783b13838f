"""The local keyring: versioned key-encryption keys in a JSON file (``RELAYKIT_KEYRING``).

The built-in key provider (``RELAYKIT_KEY_PROVIDER=local``, the default). The file (default
``$RELAYKIT_HOME/keyring.json``) must be mode 0600 and owned by the user relaykit runs as;
it is never created behind the operator's back: only on an empty database at start-up or by
``relaykit keys init`` (:mod:`relaykit.keys.custody` decides). Which of its keys wraps new
data keys is recorded in the database, not in the file, so every node agrees; the file's
``primary`` is only the key a new database begins with.
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

from relaykit.errors import ConfigurationError
from relaykit.ids import isoformat_z, new_id
from relaykit.sealing import CredentialsUnreadable, KeyUnavailable, SealError

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


class KeyringMissing(ConfigurationError):
    """There is no keyring file where ``RELAYKIT_KEYRING`` says."""


class KeyringExists(ConfigurationError):
    """:meth:`LocalKeyring.create` found a keyring already there (it never overwrites one)."""


class LocalKeyring:
    """Versioned KEKs in a JSON file (mode 0600, the process's own user).

    :meth:`create` makes a new file atomically (it refuses if one exists); the constructor
    loads an existing one and raises :class:`KeyringMissing` if there is none. Changes made
    by another process (``relaykit keys rotate`` adds a key) are picked up with one
    ``stat()`` when a key is missing or the default is asked for.
    """

    name = "local"
    FILE_NAME = "keyring.json"
    in_process = True  # AES key wrap in memory; the file is read only when it changes

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, AESGCM] = {}
        self._created: dict[str, str] = {}
        self._default = ""
        self._stamp: tuple[int, int] | None = None
        if not path.exists():
            raise KeyringMissing(f"there is no keyring at {path}")
        self.reload()

    @classmethod
    def create(cls, path: Path) -> LocalKeyring:
        """A new keyring with one key at ``path``; :class:`KeyringExists` if one exists."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        entry = _new_key_entry()
        content = json.dumps(
            msgspec.to_builtins(_KeyringFile(format=1, primary=entry.id, keys=[entry])), indent=2
        ).encode()
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{new_id()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            # link() fails if a keyring appeared meanwhile: it is never overwritten.
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise KeyringExists(f"a keyring already exists at {path}") from None
        finally:
            temporary.unlink(missing_ok=True)
        logger.info("created the keyring %s with key %s", path, entry.id)
        return cls(path)

    @property
    def inode(self) -> int | None:
        """The inode of the file as last read (to tell it from one put in its place)."""
        return self._stamp[0] if self._stamp is not None else None

    @property
    def default_key_id(self) -> str:
        self._reload_if_changed()
        return self._default

    def holds(self, key_id: str) -> bool:
        if key_id not in self._keys:
            self._reload_if_changed()
        return key_id in self._keys

    def _reload_if_changed(self) -> None:
        """Pick up a change made by another process: one stat() per call."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return
        if (stat.st_ino, stat.st_mtime_ns) != self._stamp:
            self.reload()

    def _check_file(self, stat: os.stat_result) -> None:
        if stat.st_uid != os.geteuid():
            raise ConfigurationError(
                f"the keyring {self.path} belongs to uid {stat.st_uid}, not to the user "
                f"relaykit runs as (uid {os.geteuid()}): chown it"
            )
        if stat.st_mode & 0o077:
            raise ConfigurationError(
                f"the keyring {self.path} has mode {stat.st_mode & 0o777:04o}: others may "
                f"read it. Run: chmod 600 {self.path}"
            )

    def reload(self) -> None:
        stat = self.path.stat()
        self._check_file(stat)
        data = self._read()
        keys: dict[str, AESGCM] = {}
        for entry in data.keys:
            material = base64.b64decode(entry.material)
            if len(material) != _KEY_BYTES:
                raise ConfigurationError(f"key {entry.id} in {self.path} is not a 256-bit key")
            keys[entry.id] = AESGCM(material)
        if data.primary not in keys:
            raise ConfigurationError(f"the keyring's primary key {data.primary} is missing from it")
        self._keys = keys
        self._created = {entry.id: entry.created_at for entry in data.keys}
        self._default = data.primary
        self._stamp = (stat.st_ino, stat.st_mtime_ns)

    def _read(self) -> _KeyringFile:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=_KeyringFile)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ConfigurationError(f"the keyring {self.path} is unreadable") from None

    @property
    def key_ids(self) -> tuple[str, ...]:
        self._reload_if_changed()
        return tuple(self._keys)

    def created_at(self, key_id: str) -> str:
        return self._created.get(key_id, "")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_KeyringFile]:
        """The keyring file, read under an exclusive lock (key changes serialize)."""

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

    def create_key(self) -> str:
        """Add a new key (the file's default from now on); returns its id. Which key wraps
        new data keys is the database's record (``relaykit keys rotate`` sets both)."""
        with self._locked() as data:
            entry = _new_key_entry()
            self._replace(_KeyringFile(format=1, primary=entry.id, keys=[*data.keys, entry]))
        self.reload()
        logger.info("keyring %s: new key %s", self.path, entry.id)
        return entry.id

    def remove_key(self, key_id: str) -> None:
        """Remove a key (callers check that it is not primary and no blob uses it)."""
        with self._locked() as data:
            if all(entry.id != key_id for entry in data.keys):
                raise SealError(f"key {key_id} is not in the keyring")
            kept = [entry for entry in data.keys if entry.id != key_id]
            if not kept:
                raise SealError(f"key {key_id} is the keyring's only key")
            primary = data.primary if data.primary != key_id else kept[-1].id
            self._replace(_KeyringFile(format=1, primary=primary, keys=kept))
        self.reload()
        logger.info("keyring %s: key %s removed", self.path, key_id)

    def _kek(self, key_id: str) -> AESGCM:
        kek = self._keys.get(key_id)
        if kek is None:
            self._reload_if_changed()  # a key added since we last read the file
            kek = self._keys.get(key_id)
        if kek is None:
            raise KeyUnavailable(f"key {key_id} is not in the keyring {self.path}")
        return kek

    def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._kek(key_id).encrypt(nonce, data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        kek = self._kek(key_id)
        try:
            return kek.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], associated_data)
        except (InvalidTag, ValueError):
            raise CredentialsUnreadable(
                "sealed credentials failed authentication: they belong to another integration "
                "or were altered"
            ) from None
