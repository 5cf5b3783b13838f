"""Capability contracts: the standard ones, and those a plugin declares."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from relaykit import (
    E164_PATTERN,
    MAX_PAYMENT_METADATA_KEYS,
    OPERATION_ID_METADATA_KEY,
    InitiatePaymentInput,
    hookimpl,
)
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


@pytest.mark.parametrize("number", ["+15550100000", "+447700900123", "+12"])
def test_e164_numbers_are_taken(number: str) -> None:
    assert re.search(E164_PATTERN, number)
    message = decode_input(STANDARD_CONTRACTS["send_sms"], {"to": number, "body": "hi"})
    assert isinstance(message, SendMessageInput) and message.to == number


@pytest.mark.parametrize(
    "number",
    [
        "15550100000",  # no plus
        "whatsapp:+15550100000",  # a channel prefix is not part of the number
        "+05550100000",  # no country code starts with 0
        "+1555010000012345",  # longer than E.164's 15 digits
        "+1",  # shorter than a country code and a number
        "+\u0661\u0665\u0665\u0665\u0660\u0661\u0660\u0660",  # Arabic-Indic digits
        "+\uff11\uff15\uff15\uff15\uff10\uff11\uff10\uff10",  # fullwidth digits
        "+15550100000\n",  # Python's $ would match before the final newline
    ],
)
def test_a_number_not_in_ascii_e164_is_refused(number: str) -> None:
    # \d would take the Arabic-Indic and fullwidth digits: no carrier does.
    assert re.search(E164_PATTERN, number) is None
    with pytest.raises(ValidationError) as info:
        decode_input(STANDARD_CONTRACTS["send_sms"], {"to": number, "body": "hi"})
    assert list(info.value.errors) == ["to"]


def payment(metadata: dict[str, str]) -> dict[str, object]:
    return {"amount": 500, "currency": "usd", "metadata": metadata}


def test_payment_metadata_leaves_room_and_a_namespace_for_relaykit() -> None:
    contract = STANDARD_CONTRACTS["initiate_payment"]
    keys = {f"k{n}": "v" for n in range(MAX_PAYMENT_METADATA_KEYS)}
    taken = decode_input(contract, payment(keys))
    assert isinstance(taken, InitiatePaymentInput) and taken.metadata == keys
    with pytest.raises(ValidationError) as info:  # one more, and relaykit's key would not fit
        decode_input(contract, payment({**keys, "one_more": "v"}))
    assert list(info.value.errors) == ["metadata"]
    for key in (OPERATION_ID_METADATA_KEY, "relaykit.anything", "a[b]", "k" * 41, ""):
        with pytest.raises(ValidationError) as info:
            decode_input(contract, payment({key: "v"}))
        assert info.value.errors == {
            "metadata": [
                "Metadata keys are 1 to 40 characters without square brackets; keys starting "
                "with 'relaykit.' are reserved."
            ]
        }
