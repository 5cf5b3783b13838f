"""The checks every provider verifier must pass, as a base class to subclass.

A provider package's tests subclass :class:`VerifierContractTests` and fill in the provider,
good credentials, and the provider's documented answers; every test below then runs against
that provider. The answers should come from the provider's own API reference (Stripe's
fixtures, Twilio's OpenAPI, …), not be invented.

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

from typing import Any, ClassVar

import httpx
import pytest

from relaykit.providers import Provider
from relaykit.testing.http import closed_port_url, run_verification, silent_server
from relaykit.verification import Outcome, VerificationResult


class VerifierContractTests:
    provider: ClassVar[Provider]
    #: credentials that pass the schema; make each secret a recognisable canary
    credentials: ClassVar[dict[str, Any]]
    #: the provider's own message in :meth:`error_response`, which a rejection must carry
    expected_error_message: ClassVar[str]

    def expected_message(self, status: int) -> str:
        """The provider's message a rejection with ``status`` must carry."""
        return self.expected_error_message

    def check_request(self, request: httpx.Request) -> None:
        """Assert the verifier sent the documented request (method, path, authentication)."""
        raise NotImplementedError

    def accepted_response(self, request: httpx.Request) -> httpx.Response:
        """The provider's documented answer to good credentials."""
        raise NotImplementedError

    def error_response(self, request: httpx.Request, status: int) -> httpx.Response:
        """The provider's documented error answer for ``status``."""
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------

    def verify(self, respond: Any) -> tuple[VerificationResult, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            self.check_request(request)
            response = respond(request)
            assert isinstance(response, httpx.Response)
            return response

        return run_verification(self.provider, self.credentials, handler=handler), seen

    def assert_no_secret(self, result: VerificationResult) -> None:
        for name in self.provider.sensitive_fields:
            value = self.credentials.get(name)
            if value:
                assert str(value) not in result.message, f"{name} leaked into the message"

    # -- the contract ------------------------------------------------------------------------

    def test_accepted(self) -> None:
        result, seen = self.verify(self.accepted_response)
        assert result.outcome is Outcome.ACCEPTED, result
        assert len(seen) == 1

    @pytest.mark.parametrize("status", [401, 403])
    def test_rejected_keeps_provider_message(self, status: int) -> None:
        result, _ = self.verify(lambda request: self.error_response(request, status))
        assert result.outcome is Outcome.REJECTED, result
        assert result.status_code == status
        assert self.expected_message(status) in result.message
        self.assert_no_secret(result)

    def test_rate_limited_with_retry_after_is_transient(self) -> None:
        def respond(request: httpx.Request) -> httpx.Response:
            response = self.error_response(request, 429)
            response.headers["Retry-After"] = "7"
            return response

        result, _ = self.verify(respond)
        assert result.outcome is Outcome.TRANSIENT, result
        assert result.status_code == 429
        assert result.retry_after == 7.0

    def test_rate_limited_without_retry_after_is_transient(self) -> None:
        result, _ = self.verify(lambda request: self.error_response(request, 429))
        assert result.outcome is Outcome.TRANSIENT, result
        assert result.retry_after is None

    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_server_error_is_transient(self, status: int) -> None:
        result, _ = self.verify(lambda request: self.error_response(request, status))
        assert result.outcome is Outcome.TRANSIENT, result
        assert result.status_code == status

    def test_server_error_with_html_body_is_transient(self) -> None:
        result, _ = self.verify(
            lambda request: httpx.Response(
                502, text="<html>Bad gateway</html>", headers={"content-type": "text/html"}
            )
        )
        assert result.outcome is Outcome.TRANSIENT
        assert "502" in result.message

    def test_malformed_success_body_is_transient(self) -> None:
        result, _ = self.verify(lambda request: httpx.Response(200, text="{not json"))
        assert result.outcome is Outcome.TRANSIENT, result

    def test_rejection_with_non_json_body_still_rejected(self) -> None:
        result, _ = self.verify(lambda request: httpx.Response(401, text="Unauthorized"))
        assert result.outcome is Outcome.REJECTED, result
        assert "401" in result.message

    def test_timeout_is_transient(self) -> None:
        with silent_server() as base:
            result = run_verification(self.provider, self.credentials, api_base=base, timeout=0.3)
        assert result.outcome is Outcome.TRANSIENT, result
        assert "in time" in result.message

    def test_connection_refused_is_transient(self) -> None:
        result = run_verification(self.provider, self.credentials, api_base=closed_port_url())
        assert result.outcome is Outcome.TRANSIENT, result
        assert "could not reach" in result.message

    def test_echoed_secret_is_redacted(self) -> None:
        secrets = [
            str(self.credentials[n])
            for n in self.provider.sensitive_fields
            if self.credentials.get(n)
        ]
        assert secrets, "give the sensitive credentials canary values"

        def respond(request: httpx.Request) -> httpx.Response:
            response = self.error_response(request, 401)
            # A provider that echoes the key back verbatim must not get it into our message.
            return httpx.Response(
                401,
                content=response.content.replace(
                    self.expected_error_message.encode(),
                    f"{self.expected_error_message} {' '.join(secrets)}".encode(),
                ),
                headers={k: v for k, v in response.headers.items() if k != "content-length"},
            )

        result, _ = self.verify(respond)
        assert result.outcome is Outcome.REJECTED
        self.assert_no_secret(result)
