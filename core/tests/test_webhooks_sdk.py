"""The webhook SDK: the helpers schemes use, ``provider_problems`` on ``webhooks``, and the
contract kit (``WebhookContractTests``), which must pass a sound scheme and catch each way a
scheme can be unsound."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest

from relaykit import (
    CredentialField,
    Provider,
    VerificationResult,
    WebhookContext,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookScheme,
    hmac_base64,
    hmac_hex,
    signatures_match,
)
from relaykit.providers import provider_problems
from relaykit.testing import WebhookContractTests
from relaykit.webhooks import moves_forward

SECRET = "whsec_canary_4f2a9c"
HEADER = "x-acme-signature"


# -- helpers -----------------------------------------------------------------------------------


def test_hmac_helpers_match_the_standard_library() -> None:
    # RFC 4231 test case 2: key "Jefe", "what do ya want for nothing?".
    message = b"what do ya want for nothing?"
    assert (
        hmac_hex("Jefe", message)
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    assert hmac_hex(b"Jefe", message, "sha1") == hmac.new(b"Jefe", message, "sha1").hexdigest()
    assert hmac_base64("Jefe", message) == "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="


def test_signatures_match_any_candidate_and_nothing_else() -> None:
    assert signatures_match("abc", ["x", "abc"])
    assert not signatures_match("abc", ["abd", "ab", "abcd", ""])
    assert not signatures_match("abc", [])


def test_a_request_reads_its_body_and_rejects_what_it_cannot() -> None:
    request = WebhookRequest(
        method="POST", url="https://x", headers={"x-a": "1"}, body=b"a=1&b=&a=2"
    )
    assert request.header("X-A") == "1" and request.header("x-b") is None
    assert request.form() == {"a": "2", "b": ""}
    with pytest.raises(WebhookRejected):
        msgspec.structs.replace(request, body=b"\xff").form()
    with pytest.raises(WebhookRejected):
        request.json()


def test_statuses_move_only_forward() -> None:
    assert moves_forward(None, "sent") and moves_forward("sent", "delivered")
    assert not moves_forward("delivered", "sent") and not moves_forward("delivered", "failed")
    assert not moves_forward(None, "no_such_status")


# -- an example scheme: X-Acme-Signature: t=<unix>,sha256=<hex of "t." + body> ------------------


def acme_header(body: bytes, secret: str, at: dt.datetime) -> str:
    stamp = int(at.timestamp())
    return f"t={stamp},sha256={hmac_hex(secret, f'{stamp}.'.encode() + body)}"


def acme_scheme(**broken: bool) -> WebhookScheme:
    """A sound timestamped scheme, or one broken in the named way."""

    def receive(
        request: WebhookRequest, credentials: Mapping[str, Any], context: WebhookContext
    ) -> list[WebhookEvent]:
        if broken.get("keyerror"):
            secret = credentials["webhook_secret"]
        else:
            secret = credentials.get("webhook_secret")
            if not secret:
                raise WebhookRejected("no webhook_secret")
        if broken.get("logs_secret"):
            logging.getLogger("acme").info("checking with %s", secret)
        header = request.header(HEADER) or ""
        fields = dict(item.partition("=")[::2] for item in header.split(","))
        stamp = fields.get("t", "")
        if not stamp.isdigit() or "sha256" not in fields:
            raise WebhookRejected("no X-Acme-Signature")
        expected = hmac_hex(str(secret), f"{stamp}.".encode() + request.body)
        if not broken.get("ignores_signature") and not signatures_match(
            expected, [fields["sha256"]]
        ):
            detail = f" (expected {expected} with {secret})" if broken.get("leaks") else ""
            raise WebhookRejected("the signature does not match" + detail)
        if not broken.get("ignores_time") and abs(context.now.timestamp() - int(stamp)) > 300:
            raise WebhookRejected("stale")
        # A DecodeError escapes the broken one.
        body = msgspec.json.decode(request.body) if broken.get("raises") else request.json()
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
            raise WebhookRejected("not an Acme event")
        key = str(uuid.uuid4()) if broken.get("random_keys") else body["id"]
        status = "done" if broken.get("bad_status") else body.get("status")
        return [WebhookEvent(dedupe_key=key, type="message.status", object_id="m1", status=status)]

    return WebhookScheme(receive=receive, secret_fields=("webhook_secret",))


async def _accept(credentials: Any, ctx: Any) -> VerificationResult:
    return VerificationResult.accepted()


async def _send(payload: Any, credentials: Any, ctx: Any) -> Any:
    raise NotImplementedError


def acme(webhooks: Any = None, *, sensitive: bool = True) -> Provider:
    return Provider(
        name="acme",
        display_name="Acme",
        category="communication",
        capabilities=("send_sms",),
        credential_schema={
            "api_key": CredentialField(sensitive=True),
            "webhook_secret": CredentialField(sensitive=sensitive, required=False),
        },
        api_base="https://api.acme.example",
        verify=_accept,
        operations={"send_sms": _send},
        webhooks=acme_scheme() if webhooks is None else webhooks,
    )


class TestAcmeWebhooks(WebhookContractTests):
    """The kit passes a sound scheme."""

    provider = acme()
    credentials = {"api_key": "key_canary_0123", "webhook_secret": SECRET}
    sample_body = b'{"id": "evt_1", "status": "delivered"}'
    signature_headers = (HEADER,)
    timestamped = True

    def sign(
        self, body: bytes, credentials: Mapping[str, Any], signed_at: dt.datetime
    ) -> WebhookRequest:
        header = acme_header(body, credentials["webhook_secret"], signed_at)
        return WebhookRequest(
            method="POST", url=self.webhook_url, headers={HEADER: header}, body=body
        )


# -- the kit catches each unsound scheme ----------------------------------------------------------

CAUGHT = (AssertionError, pytest.fail.Exception, KeyError, msgspec.DecodeError)

BREAKS = [
    ("ignores_signature", "test_a_wrong_secret_is_rejected", {}),
    ("ignores_signature", "test_a_flipped_body_byte_is_rejected", {"where": "middle"}),
    ("ignores_time", "test_a_stale_or_future_timestamp_is_rejected", {}),
    ("leaks", "test_a_wrong_secret_is_rejected", {}),
    ("random_keys", "test_the_same_delivery_twice_gives_the_same_dedupe_keys", {}),
    ("keyerror", "test_without_the_secret_configured_it_is_rejected", {}),
    ("raises", "test_a_body_that_is_not_the_schemes_is_rejected_not_raised", {"body": b"[]x"}),
    ("bad_status", "test_a_valid_signature_is_accepted", {}),
]


@pytest.mark.parametrize(("broken", "test", "args"), BREAKS, ids=[f"{b}-{t}" for b, t, _ in BREAKS])
def test_the_kit_catches_an_unsound_scheme(broken: str, test: str, args: dict[str, Any]) -> None:
    class Broken(TestAcmeWebhooks):
        provider = acme(acme_scheme(**{broken: True}))

    getattr(TestAcmeWebhooks(), test)(**args)  # the sound scheme passes it
    with pytest.raises(CAUGHT):
        getattr(Broken(), test)(**args)


def test_the_kit_catches_a_secret_in_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(TestAcmeWebhooks):
        provider = acme(acme_scheme(logs_secret=True))

    with pytest.raises(AssertionError, match="log line"):
        Broken().test_no_secret_reaches_a_log_line(caplog)


def test_the_kit_catches_a_secret_that_is_not_sensitive() -> None:
    class Broken(TestAcmeWebhooks):
        provider = acme(sensitive=False)

    with pytest.raises(pytest.fail.Exception, match="not sensitive"):
        Broken().test_the_scheme_is_well_formed()


def test_the_kit_catches_a_header_that_is_not_needed() -> None:
    class Broken(TestAcmeWebhooks):
        signature_headers = (HEADER, "content-type")

        def sign(
            self, body: bytes, credentials: Mapping[str, Any], signed_at: dt.datetime
        ) -> WebhookRequest:
            request = super().sign(body, credentials, signed_at)
            return msgspec.structs.replace(
                request, headers={**request.headers, "content-type": "application/json"}
            )

    with pytest.raises(pytest.fail.Exception, match="without content-type was accepted"):
        Broken().test_each_missing_signature_header_is_rejected()


# -- provider_problems -----------------------------------------------------------------------------


def test_a_sound_scheme_has_no_problems() -> None:
    assert provider_problems(acme()) == []


@pytest.mark.parametrize(
    ("webhooks", "problem"),
    [
        (object(), "webhooks must be a relaykit.WebhookScheme, got object"),
        (
            WebhookScheme(receive=acme_scheme().receive, secret_fields=("signing_key",)),
            "webhooks.secret_fields names 'signing_key', which is not a credential field",
        ),
        (
            WebhookScheme(receive=acme_scheme().receive, secret_fields=()),
            "webhooks.secret_fields must name the credential fields the check needs",
        ),
        (
            WebhookScheme(receive=_accept, secret_fields=("webhook_secret",)),  # type: ignore[arg-type]
            "webhooks.receive must be a plain (not async) callable",
        ),
    ],
)
def test_a_malformed_scheme_is_refused(webhooks: Any, problem: str) -> None:
    assert provider_problems(acme(webhooks)) == [problem]


def test_a_secret_field_that_is_not_sensitive_is_refused() -> None:
    assert provider_problems(acme(sensitive=False)) == [
        "webhooks.secret_fields names 'webhook_secret', which is not sensitive"
    ]
