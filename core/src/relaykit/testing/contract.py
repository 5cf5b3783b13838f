"""The checks every provider verifier must pass, as a base class to subclass.

A provider package's tests subclass :class:`VerifierContractTests` and fill in the provider,
good credentials, and the provider's documented answers; every test below then runs against
that provider. The answers should come from the provider's own API reference (Stripe's
fixtures, Twilio's OpenAPI, …), not be invented.

:class:`ContractBase` holds what the verifier's contract and the operations' contract
(:mod:`relaykit.testing.operation_contract`) are both given.

Example:
    .. code-block:: python

        class TestAcmeVerifier(VerifierContractTests):
            provider = PROVIDER
            credentials = {"api_key": "key_canary_0123456789"}

            def check_request(self, request):
                assert request.url.path == "/v1/me"

            def accepted_response(self, request):
                return httpx.Response(200, json={"id": "me"})

            def error_response(self, request, status):
                return httpx.Response(status, json={"error": "Bad credentials"})

            expected_error_message = "Bad credentials"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
import pytest

from relaykit.providers import Provider
from relaykit.testing.http import closed_port_url, recording, run_verification, silent_server
from relaykit.validation import Problems, check_credentials
from relaykit.verification import VerificationOutcome, VerificationResult

#: An API base no request should reach unchanged: the override tests point the provider here.
OVERRIDE_BASE = "http://127.0.0.1:9/relaykit-override/"
#: What a tenant may type into an identifier that a provider puts in a URL path: a value
#: that tries to leave its path segment (``/``, dot segments) or the path (``?``, ``#``).
STRAY_SUFFIXES = ("/../x", "?x=1#y")
DOT_SEGMENTS = (".", "..", "...")


class ContractBase:
    """What every contract class is given: the provider, its credentials, its error answer."""

    provider: ClassVar[Provider]
    #: credentials that pass the schema; make each secret a recognisable canary
    credentials: ClassVar[dict[str, Any]]
    #: the provider's own message in ``error_response(request, 401)``, which a refusal must
    #: carry
    expected_error_message: ClassVar[str]

    def expected_message(self, status: int) -> str:
        """The provider's message an error answer with ``status`` (401 or 403) must carry."""
        return self.expected_error_message

    def error_response(self, request: httpx.Request, status: int) -> httpx.Response:
        """The provider's documented error answer for ``status``, to ``request`` (the
        verifier's or an operation's)."""
        raise NotImplementedError

    def test_the_credentials_pass_the_schema(self) -> None:
        problems = Problems()
        check_credentials(self.provider, self.credentials, problems, partial=False)
        if problems.errors:
            pytest.fail(
                f"credentials must pass the provider's credential_schema: {problems.errors}",
                pytrace=False,
            )

    # -- helpers -----------------------------------------------------------------------------

    def secret_values(self) -> list[str]:
        """The values of the provider's sensitive credential fields, as given."""
        return [
            str(self.credentials[name])
            for name in sorted(self.provider.sensitive_fields)
            if self.credentials.get(name)
        ]

    def assert_no_secret(self, result: object) -> None:
        """Assert no secret credential value is anywhere in ``result``."""
        for secret in self.secret_values():
            assert secret not in repr(result), f"a credential value reached the result: {result}"

    def stray_credentials(self) -> list[tuple[str, dict[str, Any]]]:
        """The credentials with one field made a value that tries to leave its path segment,
        as ``(what, credentials)`` pairs; only those the provider's schema lets through."""
        found = []
        for name, field in self.provider.credential_schema.items():
            value = self.credentials.get(name)
            if field.type != "string" or not isinstance(value, str):
                continue
            for stray in (*(value + s for s in STRAY_SUFFIXES), *DOT_SEGMENTS):
                credentials = {**self.credentials, name: stray}
                problems = Problems()
                check_credentials(self.provider, credentials, problems, partial=False)
                if not problems.errors:
                    found.append((f"{name}={stray!r}", credentials))
        return found

    def assert_same_route(
        self, baseline: list[httpx.Request], seen: list[httpx.Request], what: str
    ) -> None:
        """Assert ``seen`` went where ``baseline`` went: same host, same number of path
        segments, no dot segment, no empty segment where there was none, same query keys."""
        assert len(seen) <= len(baseline), f"with {what}, more requests were sent"
        for expected, request in zip(baseline, seen, strict=False):
            want = expected.url.raw_path.partition(b"?")[0].split(b"/")
            got = request.url.raw_path.partition(b"?")[0].split(b"/")
            assert request.url.host == expected.url.host, f"with {what}, another host"
            assert len(got) == len(want) and all(
                segment not in (b".", b"..") and (segment or not wanted)
                for segment, wanted in zip(got, want, strict=True)
            ), (
                f"with {what}, the request left its path segment ({request.url.raw_path!r}): "
                "quote identifiers with relaykit.path_segment"
            )
            assert {k for k, _ in parse_qsl(request.url.query.decode())} == {
                k for k, _ in parse_qsl(expected.url.query.decode())
            }, f"with {what}, the request's query changed: {request.url.raw_path!r}"

    def error_echoing_secrets(self, request: httpx.Request, status: int) -> httpx.Response:
        """The provider's 401 error answer, sent with ``status``, its message followed by
        every secret credential value: a provider that echoes the key it refused."""
        secrets = self.secret_values()
        assert secrets, "give the sensitive credentials canary values"
        documented = self.error_response(request, 401)
        message = self.expected_error_message.encode()
        assert message in documented.content, (
            "expected_error_message must be the message of error_response(request, 401)"
        )
        return httpx.Response(
            status,
            content=documented.content.replace(
                message, f"{self.expected_error_message} {' '.join(secrets)}".encode()
            ),
            headers={k: v for k, v in documented.headers.items() if k != "content-length"},
        )


class VerifierContractTests(ContractBase):
    def check_request(self, request: httpx.Request) -> None:
        """Assert the verifier sent the documented request (method, path, authentication)."""
        raise NotImplementedError

    def accepted_response(self, request: httpx.Request) -> httpx.Response:
        """The provider's documented answer to good credentials."""
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------

    def verify(
        self, respond: Callable[[httpx.Request], httpx.Response]
    ) -> tuple[VerificationResult, list[httpx.Request]]:
        """Verify ``self.credentials`` against ``respond``, checking each request sent."""

        def checked(request: httpx.Request) -> httpx.Response:
            self.check_request(request)
            return respond(request)

        handler, seen = recording(checked)
        return run_verification(self.provider, self.credentials, handler=handler), seen

    # -- the contract ------------------------------------------------------------------------

    def test_accepted(self) -> None:
        result, seen = self.verify(self.accepted_response)
        assert result.outcome is VerificationOutcome.ACCEPTED, result
        assert len(seen) == 1

    @pytest.mark.parametrize("status", [401, 403])
    def test_rejected_keeps_provider_message(self, status: int) -> None:
        result, _ = self.verify(lambda request: self.error_response(request, status))
        assert result.outcome is VerificationOutcome.REJECTED, result
        assert result.status_code == status
        assert self.expected_message(status) in result.message
        self.assert_no_secret(result)

    def test_rate_limited_with_retry_after_is_transient(self) -> None:
        def respond(request: httpx.Request) -> httpx.Response:
            response = self.error_response(request, 429)
            response.headers["Retry-After"] = "7"
            return response

        result, _ = self.verify(respond)
        assert result.outcome is VerificationOutcome.TRANSIENT, result
        assert result.status_code == 429
        assert result.retry_after == 7.0

    def test_rate_limited_without_retry_after_is_transient(self) -> None:
        result, _ = self.verify(lambda request: self.error_response(request, 429))
        assert result.outcome is VerificationOutcome.TRANSIENT, result
        assert result.retry_after is None

    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_server_error_is_transient(self, status: int) -> None:
        result, _ = self.verify(lambda request: self.error_response(request, status))
        assert result.outcome is VerificationOutcome.TRANSIENT, result
        assert result.status_code == status

    def test_server_error_with_html_body_is_transient(self) -> None:
        result, _ = self.verify(
            lambda request: httpx.Response(
                502, text="<html>Bad gateway</html>", headers={"content-type": "text/html"}
            )
        )
        assert result.outcome is VerificationOutcome.TRANSIENT
        assert "502" in result.message

    def test_malformed_success_body_is_transient(self) -> None:
        result, _ = self.verify(lambda request: httpx.Response(200, text="{not json"))
        assert result.outcome is VerificationOutcome.TRANSIENT, result

    def test_rejection_with_non_json_body_still_rejected(self) -> None:
        result, _ = self.verify(lambda request: httpx.Response(401, text="Unauthorized"))
        assert result.outcome is VerificationOutcome.REJECTED, result
        assert "401" in result.message

    def test_timeout_is_transient(self) -> None:
        with silent_server() as base:
            result = run_verification(self.provider, self.credentials, api_base=base, timeout=0.3)
        assert result.outcome is VerificationOutcome.TRANSIENT, result
        assert "in time" in result.message

    def test_connection_refused_is_transient(self) -> None:
        result = run_verification(self.provider, self.credentials, api_base=closed_port_url())
        assert result.outcome is VerificationOutcome.TRANSIENT, result
        assert "could not reach" in result.message

    def test_echoed_secret_is_redacted(self) -> None:
        result, _ = self.verify(lambda request: self.error_echoing_secrets(request, 401))
        assert result.outcome is VerificationOutcome.REJECTED
        self.assert_no_secret(result)

    def test_the_api_base_override_is_used(self) -> None:
        handler, seen = recording(lambda request: httpx.Response(503))
        run_verification(self.provider, self.credentials, handler=handler, api_base=OVERRIDE_BASE)
        assert seen, "the verifier sent no request"
        assert all(str(r.url).startswith(OVERRIDE_BASE) for r in seen), (
            f"the verifier must send paths relative to ctx.http's base URL, not {seen[0].url}"
        )

    def test_an_identifier_stays_in_its_path_segment(self) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            return self.error_response(request, 401)

        handler, baseline = recording(refuse)
        run_verification(self.provider, self.credentials, handler=handler)
        for what, credentials in self.stray_credentials():
            handler, seen = recording(refuse)
            result = run_verification(self.provider, credentials, handler=handler)
            self.assert_same_route(baseline, seen, what)
            # Credentials no request can carry are refused, not checked again later.
            assert result.outcome is VerificationOutcome.REJECTED, (what, result)
