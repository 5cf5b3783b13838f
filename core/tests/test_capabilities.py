"""Capability contracts: the standard ones, and those a plugin declares."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from relaykit import hookimpl
from relaykit.capabilities import (
    STANDARD_CONTRACTS,
    CapabilityContract,
    SendMessageInput,
    decode_input,
)
from relaykit.errors import ValidationError
from relaykit.operations import OperationResult
from relaykit.plugins import make_plugin_manager

from .providers_for_tests import OneProvider, make_provider


class SendFaxInput(msgspec.Struct, forbid_unknown_fields=True):
    to: str
    document_url: str


class FaxResult(msgspec.Struct):
    provider_fax_id: str
    provider_status: str


async def send_fax(payload: Any, credentials: Any, ctx: Any) -> OperationResult:
    return OperationResult.succeeded(FaxResult(provider_fax_id="f1", provider_status="queued"))


class FaxCapability:
    @hookimpl
    def relaykit_capabilities(self) -> Any:
        yield CapabilityContract("send_fax", SendFaxInput, FaxResult, "Send a fax")


FAXER = make_provider("faxer", capabilities=("send_fax",), operations={"send_fax": send_fax})


def test_a_plugin_declares_a_capability_and_a_provider_offers_it() -> None:
    pm = make_plugin_manager(
        load_entrypoints=False, plugins=[("fax", FaxCapability()), ("faxer", OneProvider(FAXER))]
    )
    catalog = pm.catalog()
    assert catalog.names == ("faxer",) and catalog.errors == ()
    assert catalog.contracts["send_fax"].input is SendFaxInput
    assert set(STANDARD_CONTRACTS) < set(catalog.contracts)
    decoded = decode_input(catalog.contracts["send_fax"], {"to": "+1", "document_url": "u"})
    assert decoded == SendFaxInput(to="+1", document_url="u")


def test_a_capability_without_a_contract_is_refused() -> None:
    catalog = make_plugin_manager(
        load_entrypoints=False, plugins=[("faxer", OneProvider(FAXER))]
    ).catalog()
    assert catalog.names == ()
    assert (
        "capability 'send_fax' has no contract: declare it with relaykit_capabilities"
        in catalog.errors[0].error
    )


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        (
            CapabilityContract("send_sms", SendFaxInput, FaxResult),
            "already declared by relaykit (standard)",
        ),
        (CapabilityContract("Send Fax", SendFaxInput, FaxResult), "is not a slug"),
        (CapabilityContract("send_fax", dict, FaxResult), "input must be a msgspec.Struct class"),  # type: ignore[arg-type]
        ("send_fax", "expected a CapabilityContract, got str"),
    ],
)
def test_bad_declarations_are_reported(declared: Any, problem: str) -> None:
    class Bad:
        @hookimpl
        def relaykit_capabilities(self) -> Any:
            return [declared]

    catalog = make_plugin_manager(load_entrypoints=False, plugins=[("bad", Bad())]).catalog()
    assert problem in catalog.errors[0].error
    assert catalog.contracts["send_sms"].input is SendMessageInput  # the standard one stands


def test_sync_handlers_are_refused_at_load() -> None:
    def not_async(payload: Any, credentials: Any, ctx: Any) -> None:
        return None

    provider = make_provider("syncy", operations={"send_sms": not_async})
    catalog = make_plugin_manager(
        load_entrypoints=False, plugins=[("s", OneProvider(provider))]
    ).catalog()
    assert "the operation handler for 'send_sms' must be async" in catalog.errors[0].error


def test_input_errors_are_keyed_by_field() -> None:
    contract = STANDARD_CONTRACTS["initiate_payment"]
    with pytest.raises(ValidationError) as info:
        decode_input(contract, {"amount": -5, "currency": "usd"})
    assert list(info.value.errors) == ["amount"]
    with pytest.raises(ValidationError) as info:
        decode_input(contract, {"amount": 5, "currency": "usd", "tip": 1})
    assert info.value.errors == {"tip": ["This field is not allowed."]}
