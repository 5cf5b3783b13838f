"""The key-provider contract (:class:`relaykit.testing.KeyProviderContractTests`) applied to
the built-in local keyring: a new keyring file with a second key made by ``create_key``."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaykit.keys.local import LocalKeyring
from relaykit.testing import KeyProviderContractTests
from relaykit.testing.key_provider_contract import KeyProviderFixture


class TestLocalKeyring(KeyProviderContractTests):
    @pytest.fixture
    def key_provider(self, tmp_path: Path) -> KeyProviderFixture:
        keyring = LocalKeyring.create(tmp_path / "keyring.json")
        first = keyring.default_key_id
        return keyring, first, keyring.create_key()


def test_a_second_process_sees_a_key_made_by_another(tmp_path: Path) -> None:
    """Beyond the contract: a key another process adds (``relaykit keys rotate``) is one this
    keyring holds at its next unwrap (one ``stat()``), not an unknown one."""
    serving = LocalKeyring.create(tmp_path / "keyring.json")
    operator = LocalKeyring(tmp_path / "keyring.json")
    new_key = operator.create_key()
    aad = b"relaykit/credentials/v1\x00t\x00i\x00acme"
    wrapped = operator.wrap(new_key, b"k" * 32, aad)
    assert serving.unwrap(new_key, wrapped, aad) == b"k" * 32
