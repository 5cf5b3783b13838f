"""``WebhookContractTests``: the checks every provider's webhook scheme must pass.

A provider that sets ``Provider.webhooks`` subclasses this in its tests and says how the
provider signs: :meth:`~WebhookContractTests.sign` builds the request the provider would send
with a body, credentials and a time. Every test below then runs the scheme as relaykit's
receiver does (``scheme.receive(request, credentials, WebhookContext(now=...))``): a valid
signature is accepted; a flipped body byte, a wrong secret, a missing signature header, a
URL other than the one signed, a stale timestamp (where the scheme has one) are rejected;
the same delivery twice gives the same dedupe keys; a body that is not the scheme's is
rejected, never raised; and no rejection carries a secret or a signature.

Example:
    .. code-block:: python

        class TestAcmeWebhooks(WebhookContractTests):
            provider = PROVIDER
            credentials = {"api_key": "key_canary_0123456789", "webhook_secret": "whsec_canary"}
            sample_body = b'{"id": "evt_1", "type": "message.delivered", "message": "msg_1"}'
            signature_headers = ("x-acme-signature",)

            def sign(self, body, credentials, signed_at):
                signature = hmac_hex(credentials["webhook_secret"], body)
                return WebhookRequest(
                    method="POST",
                    url=self.webhook_url,
                    headers={"x-acme-signature": f"sha256={signature}"},
                    body=body,
                )
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
import pytest

from relaykit.providers import Provider, provider_problems
from relaykit.webhooks import (
    STATUS_RANK,
    WebhookContext,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookScheme,
)

#: The time the contract receives at (signatures are made for it unless a test says not).
NOW = dt.datetime(2025, 3, 14, 15, 9, 26, tzinfo=dt.UTC)
#: How far outside the tolerance a stale (or future) timestamp is.
MARGIN = dt.timedelta(seconds=60)
#: Bodies no provider sends; each is signed validly and must be rejected or read, not raise.
STRANGE_BODIES = (
    b"",
    b"not a form or JSON \xff\xfe",
    b"[]",
    b"{}",
    b'{"id": 12, "type": null, "data": []}',
    b"a=b&c=d",
    b"%zz=%%&=&&",
    b"{" * 2000,
)


class WebhookContractTests:
    """The webhook contract; see the module for what the subclass gives."""

    #: the provider, with ``webhooks`` set
    provider: ClassVar[Provider]
    #: credentials that pass the schema, each secret a recognisable canary
    credentials: ClassVar[dict[str, Any]]
    #: one event as the provider sends it (the body of :meth:`sign`'s request)
    sample_body: ClassVar[bytes]
    #: the headers (lower case) that carry the signature; removing any one of them must
    #: reject the request
    signature_headers: ClassVar[tuple[str, ...]]
    #: whether the signature carries a time that must be within the tolerance
    timestamped: ClassVar[bool] = False
    #: the URL the provider calls (the integration's webhook URL)
    webhook_url: ClassVar[str] = "https://relay.example.com/webhooks/int_0123456789abcdef"

    def sign(
        self, body: bytes, credentials: Mapping[str, Any], signed_at: dt.datetime
    ) -> WebhookRequest:
        """The request the provider sends to :attr:`webhook_url` with ``body``, signed with
        ``credentials``' secret at ``signed_at``."""
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------

    @property
    def scheme(self) -> WebhookScheme:
        scheme = self.provider.webhooks
        if not isinstance(scheme, WebhookScheme):
            pytest.fail(
                "The provider declares no webhooks: set Provider(webhooks=WebhookScheme(...)).",
                pytrace=False,
            )
        return scheme

    def receive(
        self,
        request: WebhookRequest,
        credentials: Mapping[str, Any] | None = None,
        now: dt.datetime = NOW,
    ) -> list[WebhookEvent]:
        """Run the scheme as relaykit's receiver does."""
        creds = self.credentials if credentials is None else credentials
        return self.scheme.receive(request, creds, WebhookContext(now=now))

    def signed(self, body: bytes | None = None, signed_at: dt.datetime = NOW) -> WebhookRequest:
        """The sample (or ``body``), validly signed with the integration's secret."""
        return self.sign(self.sample_body if body is None else body, self.credentials, signed_at)

    def wrong_secret(self) -> dict[str, Any]:
        """The credentials with every secret the scheme uses changed."""
        return {
            **self.credentials,
            **{name: f"{self.credentials[name]}_other" for name in self.scheme.secret_fields},
        }

    def secrets(self) -> list[str]:
        return [str(self.credentials[name]) for name in self.scheme.secret_fields]

    def rejection(
        self,
        request: WebhookRequest,
        credentials: Mapping[str, Any] | None = None,
        now: dt.datetime = NOW,
        *,
        what: str,
    ) -> WebhookRejected:
        """Assert the scheme rejects ``request``; the rejection, checked for secrets."""
        try:
            events = self.receive(request, credentials, now)
        except WebhookRejected as exc:
            self.assert_nothing_secret(str(exc), request)
            return exc
        pytest.fail(f"{what} was accepted: {events!r}", pytrace=False)

    def assert_nothing_secret(self, text: str, request: WebhookRequest) -> None:
        for secret in self.secrets():
            assert secret not in text, f"a secret reached a rejection's message: {text!r}"
        for name in self.signature_headers:
            signature = request.header(name)
            if signature and len(signature) >= 8:
                assert signature not in text, f"a signature reached a message: {text!r}"

    # -- the contract ------------------------------------------------------------------------

    def test_the_scheme_is_well_formed(self) -> None:
        self.scheme  # noqa: B018 - fails when the provider declares none
        problems = [p for p in provider_problems(self.provider) if p.startswith("webhooks")]
        if problems:
            pytest.fail(
                "relaykit would not load the provider: " + "; ".join(problems), pytrace=False
            )
        for name in self.scheme.secret_fields:
            if not self.credentials.get(name):
                pytest.fail(f"Give credentials[{name!r}] a canary value.", pytrace=False)
        if not self.signature_headers:
            pytest.fail("Name the signature's headers in signature_headers.", pytrace=False)

    def test_a_valid_signature_is_accepted(self) -> None:
        request = self.signed()
        assert request.url == self.webhook_url, "sign() must send to self.webhook_url"
        events = self.receive(request)
        assert isinstance(events, list) and events, "a valid delivery gave no events"
        for event in events:
            assert isinstance(event, WebhookEvent), f"not a WebhookEvent: {event!r}"
            assert isinstance(event.dedupe_key, str) and event.dedupe_key, event
            assert isinstance(event.type, str) and event.type, event
            assert event.status is None or event.status in STATUS_RANK, (
                f"status {event.status!r} is not one of relaykit's ({', '.join(STATUS_RANK)})"
            )
            if event.status is not None:
                assert event.object_id, f"an event with a status names no object: {event!r}"
            msgspec.json.encode(event)  # relaykit stores it as it is

    def test_the_same_delivery_twice_gives_the_same_dedupe_keys(self) -> None:
        first = [e.dedupe_key for e in self.receive(self.signed())]
        again = [e.dedupe_key for e in self.receive(self.signed())]
        assert first == again, "a repeated delivery must repeat its dedupe keys"
        assert len(set(first)) == len(first), "two events of one delivery share a dedupe key"

    @pytest.mark.parametrize("where", ["first", "middle", "last"])
    def test_a_flipped_body_byte_is_rejected(self, where: str) -> None:
        request = self.signed()
        body = bytearray(request.body)
        assert body, "the sample body is empty"
        index = {"first": 0, "middle": len(body) // 2, "last": len(body) - 1}[where]
        body[index] ^= 0x01
        tampered = msgspec.structs.replace(request, body=bytes(body))
        self.rejection(tampered, what=f"a body with its {where} byte flipped")

    def test_a_wrong_secret_is_rejected(self) -> None:
        # Another integration's secret: its events must not land on this integration.
        request = self.sign(self.sample_body, self.wrong_secret(), NOW)
        self.rejection(request, what="a delivery signed with another secret")

    def test_each_missing_signature_header_is_rejected(self) -> None:
        request = self.signed()
        for name in self.signature_headers:
            assert request.header(name), f"sign() sent no {name} header"
            headers = {k: v for k, v in request.headers.items() if k != name.lower()}
            stripped = msgspec.structs.replace(request, headers=headers)
            self.rejection(stripped, what=f"a delivery without {name}")

    def test_an_empty_signature_is_rejected(self) -> None:
        request = self.signed()
        headers = {**request.headers, **dict.fromkeys(self.signature_headers, "")}
        self.rejection(
            msgspec.structs.replace(request, headers=headers), what="empty signature headers"
        )

    def test_another_url_is_rejected_where_the_url_is_signed(self) -> None:
        if not self.scheme.signs_url:
            pytest.skip("the scheme does not sign the URL")
        request = self.signed()
        other = msgspec.structs.replace(request, url=self.webhook_url + "0")
        self.rejection(other, what="a delivery signed for another URL")

    def test_without_the_secret_configured_it_is_rejected(self) -> None:
        for name in self.scheme.secret_fields:
            for missing in ({}, {name: None}, {name: ""}):
                credentials = {k: v for k, v in self.credentials.items() if k != name}
                self.rejection(
                    self.signed(),
                    {**credentials, **missing},
                    what=f"a delivery to an integration without {name}",
                )

    def test_a_stale_or_future_timestamp_is_rejected(self) -> None:
        if not self.timestamped:
            pytest.skip("the scheme's signature has no timestamp")
        tolerance = dt.timedelta(seconds=WebhookContext(now=NOW).tolerance)
        for signed_at in (NOW - tolerance - MARGIN, NOW + tolerance + MARGIN):
            self.rejection(self.signed(signed_at=signed_at), what=f"a delivery signed {signed_at}")

    def test_a_timestamp_within_the_tolerance_is_accepted(self) -> None:
        if not self.timestamped:
            pytest.skip("the scheme's signature has no timestamp")
        tolerance = dt.timedelta(seconds=WebhookContext(now=NOW).tolerance)
        for signed_at in (NOW - tolerance + MARGIN, NOW + tolerance - MARGIN):
            assert self.receive(self.signed(signed_at=signed_at))

    @pytest.mark.parametrize(
        "body", STRANGE_BODIES, ids=[f"body{i}" for i in range(len(STRANGE_BODIES))]
    )
    def test_a_body_that_is_not_the_schemes_is_rejected_not_raised(self, body: bytes) -> None:
        # Signed validly, so only the reading is tested: relaykit answers a 4xx for a
        # rejection, and any other exception would be a 500.
        try:
            events = self.receive(self.signed(body))
        except WebhookRejected as exc:
            self.assert_nothing_secret(str(exc), self.signed(body))
            return
        assert isinstance(events, list)
        assert all(isinstance(e, WebhookEvent) and e.dedupe_key for e in events), events

    def test_no_secret_reaches_a_log_line(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        self.receive(self.signed())
        for request, credentials in (
            (self.sign(self.sample_body, self.wrong_secret(), NOW), None),
            (self.signed(), self.wrong_secret()),
        ):
            with pytest.raises(WebhookRejected):
                self.receive(request, credentials)
        for record in caplog.records:
            text = record.getMessage() + (record.exc_text or "")
            for secret in self.secrets():
                assert secret not in text, f"a secret reached a log line ({record.name})"
