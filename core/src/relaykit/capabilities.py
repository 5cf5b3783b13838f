"""The standard capability names. Any provider with a capability can serve its requests.

The input and output contract of each capability lives in the core, so that routing can move
a request from one provider to another; plugins use these names rather than spelling them.
"""

from __future__ import annotations

SEND_SMS = "send_sms"
SEND_WHATSAPP = "send_whatsapp"
INITIATE_PAYMENT = "initiate_payment"
PROCESS_REFUND = "process_refund"
VERIFY_PAYMENT = "verify_payment"

STANDARD_CAPABILITIES = (
    SEND_SMS,
    SEND_WHATSAPP,
    INITIATE_PAYMENT,
    PROCESS_REFUND,
    VERIFY_PAYMENT,
)
