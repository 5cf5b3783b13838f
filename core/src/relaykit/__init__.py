"""relaykit: the provider SDK and the engine behind the relaykit service.

Everything a provider plugin needs is importable from here, and a plugin imports from
nowhere else in relaykit::

    from relaykit import CredentialField, Provider, VerificationResult, hookimpl

The test kit for provider packages is :mod:`relaykit.testing` (``relaykit[testing]``).
"""

from relaykit import capabilities
from relaykit.capabilities import (
    E164_PATTERN,
    MAX_PAYMENT_METADATA_KEYS,
    OPERATION_ID_METADATA_KEY,
    CapabilityContract,
    InitiatePaymentInput,
    MessageResult,
    PaymentResult,
    PhoneNumber,
    ProcessRefundInput,
    RefundResult,
    SendMessageInput,
    VerifyPaymentInput,
)
from relaykit.hookspecs import hookimpl
from relaykit.operations import (
    OperationContext,
    OperationHandler,
    OperationOutcome,
    OperationResult,
    classify_operation_response,
)
from relaykit.provider_http import ProviderContext, json_body, parse_retry_after, path_segment
from relaykit.providers import HEADER_SAFE_PATTERN, CredentialField, Credentials, Provider
from relaykit.redaction import redact
from relaykit.verification import VerificationOutcome, VerificationResult, classify_response
from relaykit.webhooks import (
    WebhookContext,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookScheme,
    hmac_base64,
    hmac_hex,
    signatures_match,
)

__version__ = "0.1.0"

__all__ = [
    "E164_PATTERN",
    "HEADER_SAFE_PATTERN",
    "MAX_PAYMENT_METADATA_KEYS",
    "OPERATION_ID_METADATA_KEY",
    "CapabilityContract",
    "CredentialField",
    "Credentials",
    "InitiatePaymentInput",
    "MessageResult",
    "OperationContext",
    "OperationHandler",
    "OperationOutcome",
    "OperationResult",
    "PaymentResult",
    "PhoneNumber",
    "ProcessRefundInput",
    "Provider",
    "ProviderContext",
    "RefundResult",
    "SendMessageInput",
    "VerificationOutcome",
    "VerificationResult",
    "VerifyPaymentInput",
    "WebhookContext",
    "WebhookEvent",
    "WebhookRejected",
    "WebhookRequest",
    "WebhookScheme",
    "__version__",
    "capabilities",
    "classify_operation_response",
    "classify_response",
    "hmac_base64",
    "hmac_hex",
    "hookimpl",
    "json_body",
    "parse_retry_after",
    "path_segment",
    "redact",
    "signatures_match",
]
