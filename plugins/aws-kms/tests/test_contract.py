"""relaykit's key-provider contract (:class:`relaykit.testing.KeyProviderContractTests`)
against KMS (moto's server, over HTTP): with key ARNs, and with alias ARNs."""

from __future__ import annotations

import uuid

import pytest

from relaykit.testing import KeyProviderContractTests
from relaykit.testing.key_provider_contract import KeyProviderFixture

from .kms_stand_in import REGION, Kms


class TestAwsKmsContract(KeyProviderContractTests):
    alias = False

    @pytest.fixture
    def key_provider(self, kms: Kms) -> KeyProviderFixture:
        first, second = kms.new_key(alias=self.alias), kms.new_key(alias=self.alias)
        return kms.provider(default_key_id=first), first, second

    @pytest.fixture
    def unknown_key_id(self) -> str:
        # the shape of a real key ARN, in the same account and region: a key KMS never made
        return f"arn:aws:kms:{REGION}:123456789012:key/{uuid.uuid4()}"


class TestAwsKmsContractWithAliases(TestAwsKmsContract):
    alias = True
