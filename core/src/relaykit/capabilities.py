"""Capabilities and their contracts: the input and output of each, defined once in the core.

Any provider with a capability serves the same input and returns the same output, so routing
can move a request from one provider to another. A plugin may declare a capability of its
own with its contract (``relaykit_capabilities`` hook).

Inputs are decoded from the request body strictly (unknown fields refused); outputs are what
``result`` holds in an operation's response.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from relaykit.errors import ValidationError
from relaykit.structure import field_errors

SEND_SMS = "send_sms"
SEND_WHATSAPP = "send_whatsapp"
INITIATE_PAYMENT = "initiate_payment"
PROCESS_REFUND = "process_refund"
VERIFY_PAYMENT = "verify_payment"

#: A phone number in E.164: ``+``, a country code that does not start with 0, at most 15
#: digits in all. ``[0-9]`` rather than ``\d``: Python's ``\d`` also matches non-ASCII digits
#: (Arabic-Indic U+0660-U+0669, fullwidth U+FF10-U+FF19 and others), which no carrier takes.
#: ``(?!\n)``: Python's ``$`` also matches before a final newline; the lookahead refuses it
#: and means nothing to a JSON Schema reader (ECMAScript's ``$`` is already the very end).
E164_PATTERN = r"^\+[1-9][0-9]{1,14}(?!\n)$"
PhoneNumber = Annotated[
    str, msgspec.Meta(pattern=E164_PATTERN, description="E.164, e.g. +15550100000")
]
MinorUnits = Annotated[
    int, msgspec.Meta(gt=0, le=99_999_999_99, description="amount in minor units")
]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{3}$", description="ISO 4217, lowercase")]
ProviderId = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class SendMessageInput(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``send_sms`` and ``send_whatsapp``. ``from`` defaults to the integration's number."""

    to: PhoneNumber
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=1600)]
    from_: PhoneNumber | None = msgspec.field(default=None, name="from")


class MessageResult(msgspec.Struct, frozen=True, kw_only=True):
    provider_message_id: str
    provider_status: str
    to: str
    from_: str = msgspec.field(name="from")


#: The key under which relaykit adds the operation id to a payment's metadata at the
#: provider. Keys starting with ``relaykit.`` are relaykit's: a tenant's are refused.
OPERATION_ID_METADATA_KEY = "relaykit.operation_id"
#: A payment's metadata holds at most this many of the tenant's keys, so relaykit's own key
#: still fits the providers' limit (Stripe: 50 keys).
MAX_PAYMENT_METADATA_KEYS = 49
#: Stripe's metadata rules: keys of at most 40 characters without square brackets.
MetadataKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^(?!relaykit\.)[^\[\]]+$")
]
_METADATA_KEY_RULE = (
    "Metadata keys are 1 to 40 characters without square brackets; keys starting with "
    "'relaykit.' are reserved."
)


class InitiatePaymentInput(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    amount: MinorUnits
    currency: Currency
    description: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    metadata: (
        Annotated[
            dict[MetadataKey, Annotated[str, msgspec.Meta(max_length=500)]],
            msgspec.Meta(max_length=MAX_PAYMENT_METADATA_KEYS),
        ]
        | None
    ) = None


class PaymentResult(msgspec.Struct, frozen=True, kw_only=True):
    """A payment as the provider holds it. ``client_secret`` is for providers whose payer
    completes the payment in a browser or app (Stripe's PaymentIntent); it lets that client
    confirm this one payment and nothing else."""

    provider_payment_id: str
    provider_status: str
    amount: int
    currency: str
    client_secret: str | None = None


class ProcessRefundInput(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    payment_id: ProviderId
    amount: MinorUnits | None = None


class RefundResult(msgspec.Struct, frozen=True, kw_only=True):
    provider_refund_id: str
    provider_status: str
    payment_id: str
    amount: int


class VerifyPaymentInput(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    payment_id: ProviderId


class CapabilityContract(msgspec.Struct, frozen=True):
    """A capability's name and the Structs its input is decoded into and its output is."""

    name: str
    input: type[msgspec.Struct]
    output: type[msgspec.Struct]
    description: str = ""


STANDARD_CONTRACTS: dict[str, CapabilityContract] = {
    c.name: c
    for c in (
        CapabilityContract(SEND_SMS, SendMessageInput, MessageResult, "Send a text message"),
        CapabilityContract(
            SEND_WHATSAPP, SendMessageInput, MessageResult, "Send a WhatsApp message"
        ),
        CapabilityContract(
            INITIATE_PAYMENT, InitiatePaymentInput, PaymentResult, "Create a payment"
        ),
        CapabilityContract(PROCESS_REFUND, ProcessRefundInput, RefundResult, "Refund a payment"),
        CapabilityContract(
            VERIFY_PAYMENT, VerifyPaymentInput, PaymentResult, "Look up a payment's status"
        ),
    )
}


def decode_input(contract: CapabilityContract, payload: Any) -> msgspec.Struct:
    """``payload`` (decoded JSON) as the contract's input; ValidationError keyed by field.

    The errors are worked out from the input Struct's declared structure, every problem at
    once (:func:`relaykit.structure.field_errors`), never from msgspec's message.
    """
    if not isinstance(payload, dict):
        raise ValidationError({"body": ["The request body must be a JSON object."]})
    try:
        return msgspec.convert(payload, contract.input)
    except msgspec.ValidationError:
        errors = field_errors(payload, contract.input, rules={MetadataKey: _METADATA_KEY_RULE})
    raise ValidationError(errors or {"body": ["The request body is invalid."]})
