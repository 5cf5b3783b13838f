"""Envelope encryption of credentials: round trip, binding to its row, tamper evidence."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from relaykit.keys import LocalKeyring
from relaykit.sealing import (
    SealContext,
    SealedBlob,
    SealError,
    open_credentials,
    read_blob,
    seal_credentials,
)

CANARY = "sk_test_canary_7d1f9a3b2c"
CONTEXT = SealContext("tenant-a", "integration-1", "stripe")


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.in_home(tmp_path / "home")


def test_round_trip_and_no_plaintext(keyring: LocalKeyring) -> None:
    sealed = seal_credentials({"secret_key": CANARY}, CONTEXT, keyring)
    assert CANARY.encode() not in sealed
    assert open_credentials(sealed, CONTEXT, keyring) == {"secret_key": CANARY}
    # a data key of its own each time: sealing twice gives different bytes
    assert seal_credentials({"secret_key": CANARY}, CONTEXT, keyring) != sealed


def test_keyring_file_is_private_and_reused(tmp_path: Path) -> None:
    first = LocalKeyring.in_home(tmp_path / "home")
    path = tmp_path / "home" / "keyring.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    sealed = seal_credentials({"k": "v"}, CONTEXT, first)
    second = LocalKeyring.in_home(tmp_path / "home")
    assert second.primary_key_id == first.primary_key_id
    assert open_credentials(sealed, CONTEXT, second) == {"k": "v"}
    assert read_blob(sealed).key_id == first.primary_key_id


MAKE_KEYRING = (
    "import sys; from pathlib import Path; from relaykit.keys import LocalKeyring; "
    "print(LocalKeyring.in_home(Path(sys.argv[1])).primary_key_id)"
)


def test_processes_starting_together_agree_on_one_keyring(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MAKE_KEYRING, home], stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    ids = [process.communicate(timeout=60)[0].strip() for process in processes]
    assert all(ids) and len(set(ids)) == 1
    assert [p.name for p in Path(home).iterdir()] == ["keyring.json"]


@pytest.mark.parametrize(
    "other",
    [
        SealContext("tenant-b", "integration-1", "stripe"),
        SealContext("tenant-a", "integration-2", "stripe"),
        SealContext("tenant-a", "integration-1", "twilio"),
    ],
)
def test_a_blob_moved_to_another_row_fails(keyring: LocalKeyring, other: SealContext) -> None:
    sealed = seal_credentials({"secret_key": CANARY}, CONTEXT, keyring)
    with pytest.raises(SealError, match="belong to another integration or were altered"):
        open_credentials(sealed, other, keyring)


def test_every_flipped_byte_fails(keyring: LocalKeyring) -> None:
    sealed = seal_credentials({"secret_key": CANARY}, CONTEXT, keyring)
    for index in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[index] ^= 0x01
        with pytest.raises(SealError) as info:
            open_credentials(bytes(tampered), CONTEXT, keyring)
        assert CANARY not in str(info.value)


def test_truncated_blob_fails(keyring: LocalKeyring) -> None:
    sealed = seal_credentials({"secret_key": CANARY}, CONTEXT, keyring)
    for cut in (0, 1, 5, len(sealed) // 2, len(sealed) - 1):
        with pytest.raises(SealError):
            open_credentials(sealed[:cut], CONTEXT, keyring)


def test_unknown_format_and_unknown_key(keyring: LocalKeyring) -> None:
    blob = read_blob(seal_credentials({"k": "v"}, CONTEXT, keyring))
    future = msgspec.msgpack.encode(msgspec.structs.replace(blob, format=9))
    with pytest.raises(SealError, match="unknown format version 9"):
        open_credentials(future, CONTEXT, keyring)
    stranger = msgspec.msgpack.encode(msgspec.structs.replace(blob, key_id="01nosuchkey"))
    with pytest.raises(SealError, match="key 01nosuchkey, not in the keyring"):
        open_credentials(stranger, CONTEXT, keyring)
    vault = msgspec.msgpack.encode(msgspec.structs.replace(blob, key_provider="vault"))
    with pytest.raises(SealError, match="key provider 'vault'"):
        open_credentials(vault, CONTEXT, keyring)


def test_a_different_keyring_cannot_open(tmp_path: Path, keyring: LocalKeyring) -> None:
    sealed = seal_credentials({"k": "v"}, CONTEXT, keyring)
    stranger = LocalKeyring.in_home(tmp_path / "elsewhere")
    with pytest.raises(SealError, match="not in the keyring"):
        open_credentials(sealed, CONTEXT, stranger)


def test_unreadable_keyring_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("{broken")
    os.chmod(path, 0o600)
    with pytest.raises(SealError, match="unreadable"):
        LocalKeyring(path)
    path.write_text(json.dumps({"format": 1, "primary": "x", "keys": []}))
    with pytest.raises(SealError, match="primary key x is missing"):
        LocalKeyring(path)


def test_blob_structure_is_versioned(keyring: LocalKeyring) -> None:
    blob = msgspec.msgpack.decode(seal_credentials({"k": "v"}, CONTEXT, keyring), type=SealedBlob)
    assert blob.format == 1 and blob.key_provider == "local" and len(blob.nonce) == 12
