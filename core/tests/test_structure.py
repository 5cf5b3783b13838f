"""Field errors worked out from a Struct's declared structure (relaykit.structure), and
decode_input's use of them: every problem at once, in relaykit's words, keyed by field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pytest

from relaykit.capabilities import STANDARD_CONTRACTS, CapabilityContract, decode_input
from relaykit.errors import ValidationError
from relaykit.structure import field_errors

METADATA_RULE = (
    "Metadata keys are 1 to 40 characters without square brackets; keys starting with "
    "'relaykit.' are reserved."
)
NUMBER = "+15550100000"


def errors_for(capability: str, payload: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        decode_input(STANDARD_CONTRACTS[capability], payload)
    return info.value.errors


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        (
            {},
            {"to": ["The to field is required."], "body": ["The body field is required."]},
        ),
        ({"to": "5550100", "body": "hi"}, {"to": ["The to field format is invalid."]}),
        ({"to": 15550100000, "body": "hi"}, {"to": ["The to field must be a string."]}),
        ({"to": NUMBER, "body": ""}, {"body": ["The body field must be at least 1 characters."]}),
        (
            {"to": NUMBER, "body": "x" * 1601},
            {"body": ["The body field must not be greater than 1600 characters."]},
        ),
        (
            {"to": NUMBER, "body": "hi", "from": "whatsapp:+1555"},
            {"from": ["The from field format is invalid."]},
        ),
        ({"to": NUMBER, "body": "hi", "cc": NUMBER}, {"cc": ["This field is not allowed."]}),
    ],
)
def test_send_sms(payload: dict[str, Any], errors: dict[str, list[str]]) -> None:
    assert errors_for("send_sms", payload) == errors


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"currency": "usd"}, {"amount": ["The amount field is required."]}),
        (
            {"amount": "500", "currency": "usd"},
            {"amount": ["The amount field must be an integer."]},
        ),
        ({"amount": 5.5, "currency": "usd"}, {"amount": ["The amount field must be an integer."]}),
        ({"amount": True, "currency": "usd"}, {"amount": ["The amount field must be an integer."]}),
        (
            {"amount": 0, "currency": "usd"},
            {"amount": ["The amount field must be greater than 0."]},
        ),
        (
            {"amount": 10_000_000_000, "currency": "usd"},
            {"amount": ["The amount field must be at most 9999999999."]},
        ),
        ({"amount": 5, "currency": 840}, {"currency": ["The currency field must be a string."]}),
        ({"amount": 5, "currency": "USD"}, {"currency": ["The currency field format is invalid."]}),
        (
            {"amount": 5, "currency": "usd", "description": "x" * 1001},
            {"description": ["The description field must not be greater than 1000 characters."]},
        ),
        (
            {"amount": 5, "currency": "usd", "metadata": ["a"]},
            {"metadata": ["The metadata field must be an object."]},
        ),
        (
            {"amount": 5, "currency": "usd", "metadata": {f"k{n}": "v" for n in range(50)}},
            {"metadata": ["The metadata field must not have more than 49 keys."]},
        ),
        (
            {"amount": 5, "currency": "usd", "metadata": {"relaykit.operation_id": "v"}},
            {"metadata": [METADATA_RULE]},
        ),
        (
            {"amount": 5, "currency": "usd", "metadata": {"a[b]": "v", "k" * 41: "v", "": "v"}},
            {"metadata": [METADATA_RULE]},  # the rule once, however many keys break it
        ),
        (
            {"amount": 5, "currency": "usd", "metadata": {"order": "x" * 501}},
            {
                "metadata": [
                    "Each value in the metadata field must not be greater than 500 characters."
                ]
            },
        ),
        (
            {"amount": 5, "currency": "usd", "metadata": {"order": 7}},
            {"metadata": ["Each value in the metadata field must be a string."]},
        ),
        ({"amount": 5, "currency": "usd", "tip": 1}, {"tip": ["This field is not allowed."]}),
    ],
)
def test_initiate_payment(payload: dict[str, Any], errors: dict[str, list[str]]) -> None:
    assert errors_for("initiate_payment", payload) == errors


def test_optional_fields_take_null() -> None:
    payload = {"amount": 5, "currency": "usd", "description": None, "metadata": None}
    assert decode_input(STANDARD_CONTRACTS["initiate_payment"], payload)
    sms = {"to": NUMBER, "body": "hi", "from": None}
    assert decode_input(STANDARD_CONTRACTS["send_sms"], sms)
    refund = {"payment_id": "pi_1", "amount": None}
    assert decode_input(STANDARD_CONTRACTS["process_refund"], refund)


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({}, {"payment_id": ["The payment_id field is required."]}),
        (
            {"payment_id": ""},
            {"payment_id": ["The payment_id field must be at least 1 characters."]},
        ),
        (
            {"payment_id": "p" * 256},
            {"payment_id": ["The payment_id field must not be greater than 255 characters."]},
        ),
        ({"payment_id": 12}, {"payment_id": ["The payment_id field must be a string."]}),
        (
            {"payment_id": "pi_1", "amount": -1},
            {"amount": ["The amount field must be greater than 0."]},
        ),
        (
            {"payment_id": "pi_1", "amount": "1"},
            {"amount": ["The amount field must be an integer."]},
        ),
    ],
)
def test_process_refund(payload: dict[str, Any], errors: dict[str, list[str]]) -> None:
    assert errors_for("process_refund", payload) == errors


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({}, {"payment_id": ["The payment_id field is required."]}),
        ({"payment_id": None}, {"payment_id": ["The payment_id field must be a string."]}),
        (
            {"payment_id": ""},
            {"payment_id": ["The payment_id field must be at least 1 characters."]},
        ),
        (
            {"payment_id": "pi_1", "amount": 5},
            {"amount": ["This field is not allowed."]},
        ),
    ],
)
def test_verify_payment(payload: dict[str, Any], errors: dict[str, list[str]]) -> None:
    assert errors_for("verify_payment", payload) == errors


def test_every_problem_is_reported_at_once() -> None:
    payload = {
        "amount": -5,
        "currency": "US",
        "description": 3,
        "metadata": {"relaykit.x": "v", "note": "x" * 501},
        "tip": 1,
        "extra": "y",
    }
    assert errors_for("initiate_payment", payload) == {
        "amount": ["The amount field must be greater than 0."],
        "currency": ["The currency field format is invalid."],
        "description": ["The description field must be a string."],
        "metadata": [
            METADATA_RULE,
            "Each value in the metadata field must not be greater than 500 characters.",
        ],
        "tip": ["This field is not allowed."],
        "extra": ["This field is not allowed."],
    }
    # one value that breaks two constraints: both said
    assert errors_for("send_sms", {"to": "x" * 20, "body": ""}) == {
        "to": ["The to field format is invalid."],
        "body": ["The body field must be at least 1 characters."],
    }


def test_messages_never_repeat_a_submitted_value() -> None:
    secret = "sk_live_do_not_echo_me"
    payload = {
        "to": secret,
        "body": secret * 200,
        "from": secret,
        secret: secret,
    }
    errors = errors_for("send_sms", payload)
    assert all(secret not in message for messages in errors.values() for message in messages)
    metadata = {"amount": 5, "currency": "usd", "metadata": {f"relaykit.{secret}": secret * 30}}
    assert secret not in str(errors_for("initiate_payment", metadata))


@pytest.mark.parametrize("payload", [[], "text", 5, None])
def test_a_body_that_is_not_an_object(payload: Any) -> None:
    assert errors_for("send_sms", payload) == {"body": ["The request body must be a JSON object."]}


# -- a plugin's own input, with a nested Struct -------------------------------------------------


class Address(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    line1: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]
    postcode: str | None = None


class ShipInput(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    address: Address
    weight_grams: Annotated[int, msgspec.Meta(ge=1, lt=30_000)]
    speed: Literal["standard", "express"] = "standard"
    tags: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=20)]], msgspec.Meta(max_length=3)
    ] = []
    declared_value: Annotated[float, msgspec.Meta(ge=0)] | None = None


class ShipResult(msgspec.Struct):
    provider_shipment_id: str


SHIP = CapabilityContract("ship_parcel", ShipInput, ShipResult, "Ship a parcel")
ADDRESS = {"line1": "1 Main St", "country": "GB"}


def ship_errors(payload: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        decode_input(SHIP, payload)
    return info.value.errors


def test_a_plugin_input_with_a_nested_struct() -> None:
    assert decode_input(SHIP, {"address": ADDRESS, "weight_grams": 500}) == ShipInput(
        address=Address(line1="1 Main St", country="GB"), weight_grams=500
    )
    assert ship_errors(
        {
            "address": {"country": "gb", "postcode": 5, "floor": 2},
            "weight_grams": 30_000,
            "speed": "overnight",
            "tags": ["a", "b", "c", "d" * 21],
            "declared_value": -1.5,
        }
    ) == {
        "address.line1": ["The address.line1 field is required."],
        "address.country": ["The address.country field format is invalid."],
        "address.postcode": ["The address.postcode field must be a string."],
        "address.floor": ["This field is not allowed."],
        "weight_grams": ["The weight_grams field must be less than 30000."],
        "speed": ['The speed field must be one of: "express", "standard".'],
        "tags": [
            "The tags field must not have more than 3 items.",
            "Each item in the tags field must not be greater than 20 characters.",
        ],
        "declared_value": ["The declared_value field must be at least 0."],
    }
    assert ship_errors({"address": "1 Main St", "weight_grams": 0}) == {
        "address": ["The address field must be an object."],
        "weight_grams": ["The weight_grams field must be at least 1."],
    }
    assert ship_errors({"address": ADDRESS, "weight_grams": 1, "declared_value": "9"}) == {
        "declared_value": ["The declared_value field must be a number."]
    }


def test_field_errors_is_empty_for_a_payload_that_fits() -> None:
    assert field_errors({"address": ADDRESS, "weight_grams": 1}, ShipInput) == {}
    assert field_errors({"to": NUMBER, "body": "hi"}, STANDARD_CONTRACTS["send_sms"].input) == {}


class Refusing(msgspec.Struct):
    """Every field fits, yet the whole is refused: nothing to key the refusal by."""

    n: int

    def __post_init__(self) -> None:
        raise ValueError("no")


def test_a_refusal_no_field_explains_is_keyed_by_body() -> None:
    contract = CapabilityContract("refuse", Refusing, ShipResult)
    assert field_errors({"n": 1}, Refusing) == {}
    with pytest.raises(ValidationError) as info:
        decode_input(contract, {"n": 1})
    assert info.value.errors == {"body": ["The request body is invalid."]}


def test_errors_do_not_come_from_msgspecs_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading msgspec's message would fail here: the errors come from the structure alone."""

    def unreadable(self: BaseException) -> str:
        raise AssertionError("msgspec's message was read")

    monkeypatch.setattr(msgspec.ValidationError, "__str__", unreadable)
    monkeypatch.setattr(msgspec.ValidationError, "__repr__", unreadable)
    payload = {"amount": 0, "currency": "usd", "metadata": {"relaykit.x": "v"}, "tip": 1}
    assert errors_for("initiate_payment", payload) == {
        "amount": ["The amount field must be greater than 0."],
        "metadata": [METADATA_RULE],
        "tip": ["This field is not allowed."],
    }
