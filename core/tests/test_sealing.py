"""Envelope encryption of credentials: round trip, binding to its row, tamper evidence, and
the local keyring's file (created only when asked, private, never overwritten)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from relaykit.errors import ConfigurationError
from relaykit.keys import KeyringMissing, KeySet, LocalKeyring, local_key_set
from relaykit.sealing import (
    CredentialsUnreadable,
    KeyUnavailable,
    SealContext,
    SealedBlob,
    SealError,
    open_credentials,
    read_blob,
    seal_credentials,
)
from relaykit.settings import Settings
from relaykit.storage.database import Database

CANARY = "sk_test_canary_7d1f9a3b2c"
CONTEXT = SealContext("tenant-a", "integration-1", "stripe")


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.create(tmp_path / "home" / "keyring.json")


@pytest.fixture
def keys(keyring: LocalKeyring) -> KeySet:
    """The keyring alone, with no database: every key it holds is taken as known."""
    return KeySet.single(keyring)


def test_round_trip_and_no_plaintext(keys: KeySet) -> None:
    sealed = seal_credentials({"secret_key": CANARY}, CONTEXT, keys)
    assert CANARY.encode() not in sealed
    assert open_credentials(sealed, CONTEXT, keys) == {"secret_key": CANARY}
    # a data key of its own each time: sealing twice gives different bytes
    assert seal_credentials({"secret_key": CANARY}, CONTEXT, keys) != sealed


def test_keyring_file_is_private_and_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "home" / "keyring.json"
    first = LocalKeyring.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    sealed = seal_credentials({"k": "v"}, CONTEXT, KeySet.single(first))
    second = LocalKeyring(path)
    assert second.default_key_id == first.default_key_id
    assert open_credentials(sealed, CONTEXT, KeySet.single(second)) == {"k": "v"}
    assert read_blob(sealed).key_id == first.default_key_id


def test_a_keyring_is_never_made_behind_the_operators_back(tmp_path: Path) -> None:
    path = tmp_path / "home" / "keyring.json"
    with pytest.raises(KeyringMissing, match=f"there is no keyring at {path}"):
        LocalKeyring(path)
    assert not path.exists() and not path.parent.exists()
    LocalKeyring.create(path)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="a keyring already exists"):
        LocalKeyring.create(path)
    assert path.read_bytes() == before


MAKE_KEYRING = """
import sys
from pathlib import Path
from relaykit.errors import ConfigurationError
from relaykit.keys import LocalKeyring
try:
    print(LocalKeyring.create(Path(sys.argv[1])).default_key_id)
except ConfigurationError as exc:
    print("refused:", exc)
"""


def test_processes_creating_at_once_make_one_keyring_and_the_rest_are_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "home" / "keyring.json"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MAKE_KEYRING, str(path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60)[0].strip() for process in processes]
    made = [out for out in outputs if not out.startswith("refused:")]
    assert len(made) == 1, outputs
    assert all("a keyring already exists" in out for out in outputs if out not in made)
    assert LocalKeyring(path).default_key_id == made[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["keyring.json"]  # no leftovers


def test_a_keyring_others_can_read_is_refused_with_what_to_run(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    LocalKeyring.create(path)
    for mode in (0o644, 0o640, 0o604):
        os.chmod(path, mode)
        with pytest.raises(ConfigurationError, match=rf"mode 0{mode:o}.*chmod 600 {path}"):
            LocalKeyring(path)
    os.chmod(path, 0o600)
    LocalKeyring(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give the file to another user")
def test_a_keyring_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    LocalKeyring.create(path)
    os.chown(path, 4242, -1)
    with pytest.raises(ConfigurationError, match=r"belongs to uid 4242.*chown it"):
        LocalKeyring(path)


@pytest.mark.parametrize(
    "other",
    [
        SealContext("tenant-b", "integration-1", "stripe"),
        SealContext("tenant-a", "integration-2", "stripe"),
        SealContext("tenant-a", "integration-1", "twilio"),
    ],
)
def test_a_blob_moved_to_another_row_fails(keys: KeySet, other: SealContext) -> None:
    sealed = seal_credentials({"secret_key": CANARY}, CONTEXT, keys)
    with pytest.raises(
        CredentialsUnreadable, match="belong to another integration or were altered"
    ):
        open_credentials(sealed, other, keys)


def test_every_flipped_byte_fails(keys: KeySet) -> None:
    sealed = seal_credentials({"secret_key": CANARY}, CONTEXT, keys)
    for index in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[index] ^= 0x01
        with pytest.raises(SealError) as info:
            open_credentials(bytes(tampered), CONTEXT, keys)
        assert CANARY not in str(info.value)


def test_with_the_database_every_flipped_byte_is_that_rows_fault(
    database: Database, settings: Settings
) -> None:
    """Attached to the database, which lists every key relaykit uses, a flipped byte is never
    taken for a lost key (the operator's fault): a key id or provider name bent by the flip
    names a key relaykit never used."""
    keys = local_key_set(settings, database)
    sealed = seal_credentials({"secret_key": CANARY}, CONTEXT, keys)
    for index in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[index] ^= 0x01
        with pytest.raises(CredentialsUnreadable) as info:
            open_credentials(bytes(tampered), CONTEXT, keys)
        assert CANARY not in str(info.value)
    assert keys.failures == 0  # none counted as a key provider failure


def test_truncated_blob_fails(keys: KeySet) -> None:
    sealed = seal_credentials({"secret_key": CANARY}, CONTEXT, keys)
    for cut in (0, 1, 5, len(sealed) // 2, len(sealed) - 1):
        with pytest.raises(SealError):
            open_credentials(sealed[:cut], CONTEXT, keys)


def test_unknown_format_and_unknown_key(keys: KeySet) -> None:
    blob = read_blob(seal_credentials({"k": "v"}, CONTEXT, keys))
    future = msgspec.msgpack.encode(msgspec.structs.replace(blob, format=9))
    with pytest.raises(CredentialsUnreadable, match="unknown format version 9"):
        open_credentials(future, CONTEXT, keys)
    # Without a database to say which keys relaykit uses, a key the keyring lacks is lost:
    stranger = msgspec.msgpack.encode(msgspec.structs.replace(blob, key_id="01nosuchkey"))
    with pytest.raises(KeyUnavailable, match="key 01nosuchkey is not in the keyring"):
        open_credentials(stranger, CONTEXT, keys)
    vault = msgspec.msgpack.encode(msgspec.structs.replace(blob, key_provider="vault"))
    with pytest.raises(KeyUnavailable, match="key provider 'vault' is not installed"):
        open_credentials(vault, CONTEXT, keys)


def test_a_key_relaykit_never_used_is_the_blobs_fault(
    database: Database, settings: Settings
) -> None:
    keys = local_key_set(settings, database)
    blob = read_blob(seal_credentials({"k": "v"}, CONTEXT, keys))
    for changed in (
        msgspec.structs.replace(blob, key_id="01nosuchkey"),
        msgspec.structs.replace(blob, key_provider="vault"),
    ):
        with pytest.raises(CredentialsUnreadable, match="which relaykit does not use"):
            open_credentials(msgspec.msgpack.encode(changed), CONTEXT, keys)


def test_a_different_keyring_cannot_open(tmp_path: Path, keys: KeySet) -> None:
    sealed = seal_credentials({"k": "v"}, CONTEXT, keys)
    stranger = KeySet.single(LocalKeyring.create(tmp_path / "elsewhere" / "keyring.json"))
    with pytest.raises(KeyUnavailable, match="not in the keyring"):
        open_credentials(sealed, CONTEXT, stranger)


def test_unreadable_keyring_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("{broken")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigurationError, match="unreadable"):
        LocalKeyring(path)
    path.write_text(json.dumps({"format": 1, "primary": "x", "keys": []}))
    with pytest.raises(ConfigurationError, match="primary key x is missing"):
        LocalKeyring(path)


def test_blob_structure_is_versioned(keys: KeySet) -> None:
    blob = msgspec.msgpack.decode(seal_credentials({"k": "v"}, CONTEXT, keys), type=SealedBlob)
    assert blob.format == 1 and blob.key_provider == "local" and len(blob.nonce) == 12
