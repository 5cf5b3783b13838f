"""The contract kit's classes compose without one hiding another's tests."""

from __future__ import annotations

from relaykit.testing import (
    OperationContractTests,
    ProviderContractTests,
    VerifierContractTests,
)


def test_the_provider_contract_runs_every_test_of_both_contracts() -> None:
    # A test of one name in both contracts would leave only one of them in the composition.
    for contract in (VerifierContractTests, OperationContractTests):
        for name in dir(contract):
            if name.startswith("test_"):
                assert getattr(ProviderContractTests, name) is getattr(contract, name), name
