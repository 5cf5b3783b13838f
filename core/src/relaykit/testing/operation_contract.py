"""The checks every provider's operation handlers must pass, as base classes to subclass.

The contract is split by concern, the way pandas splits its extension-array tests
(pandas/tests/extension/base/): one class per concern, each checking every capability
named in ``operation_inputs`` that has a core contract, and :class:`OperationContractTests`,
all of them together. :class:`~relaykit.testing.ProviderContractTests` includes it, so a
provider package that subclasses that (``relaykit new-provider`` writes one) runs this
contract too.

The subclass gives, besides what the verifier's contract takes (``provider``,
``credentials``, ``error_response``, ``expected_error_message``):

* ``operation_inputs``: capability -> a valid input, as a client would send it;
* ``operation_response(capability, request)``: the provider's documented success answer;
* optionally ``check_operation_request(capability, request)``: assert the documented request.

Each handler runs as the dispatcher runs it (:func:`relaykit.testing.run_handler`), against
a fake of the provider's API at the transport, a local server that never answers, or a
closed port.

Example:
    .. code-block:: python

        class TestAcmeOperations(OperationContractTests):
            provider = PROVIDER
            credentials = {"api_key": "key_canary_0123456789", "sender": "+15550100000"}
            expected_error_message = "Bad credentials"
            operation_inputs = {"send_sms": {"to": "+15550100001", "body": "hi"}}

            def error_response(self, request, status):
                return httpx.Response(status, json={"error": "Bad credentials"})

            def operation_response(self, capability, request):
                return httpx.Response(201, json={"id": "msg_1", "status": "queued"})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import unquote_plus

import httpx
import pytest

from relaykit.capabilities import STANDARD_CONTRACTS, SendMessageInput
from relaykit.operations import OperationOutcome, OperationResult
from relaykit.provider_http import json_body
from relaykit.providers import provider_problems
from relaykit.testing.contract import OVERRIDE_BASE, ContractBase
from relaykit.testing.http import closed_port_url, recording, run_handler, silent_server

Respond = Callable[[httpx.Request], httpx.Response]

#: What a body must never have repeated into a result.
CANARY = "body_canary_24681357"
#: A sender other than the integration's, for ``from``.
OTHER_SENDER = "+15550100099"


class OperationContractBase(ContractBase):
    """What the operation contract is given, and how it runs a handler."""

    #: capability -> a valid input for it (JSON, as a client would send it)
    operation_inputs: ClassVar[dict[str, dict[str, Any]]] = {}

    def operation_response(self, capability: str, request: httpx.Request) -> httpx.Response:
        """The provider's documented success answer to ``capability``'s request."""
        raise NotImplementedError

    def check_operation_request(self, capability: str, request: httpx.Request) -> None:
        """Assert ``capability``'s handler sent the documented request (method, path,
        authentication); the success tests call it on every request. Optional."""

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run each test that takes ``capability`` once per capability in
        ``operation_inputs`` with a core contract (a capability a plugin declares is its own
        tests' to check), and each that takes ``message_capability`` once per such
        capability whose input is a message."""
        capabilities = sorted(c for c in self.operation_inputs if c in STANDARD_CONTRACTS)
        if "capability" in metafunc.fixturenames:
            metafunc.parametrize("capability", capabilities)
        if "message_capability" in metafunc.fixturenames:
            metafunc.parametrize(
                "message_capability",
                [c for c in capabilities if STANDARD_CONTRACTS[c].input is SendMessageInput],
            )

    # -- helpers -----------------------------------------------------------------------------

    def operate(
        self,
        capability: str,
        respond: Respond | None,
        *,
        payload: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        secrets: dict[str, Any] | None = None,
        api_base: str | None = None,
        timeout: float = 5.0,
    ) -> tuple[OperationResult, list[httpx.Request]]:
        """Run ``capability``'s handler with ``payload`` (default: its ``operation_inputs``)
        and ``credentials`` (default: ``self.credentials``) against ``respond`` (or a real
        ``api_base``); the result and the requests sent.

        ``secrets`` are what the core redacts; the default is the sensitive credentials, as
        the dispatcher passes them, and ``{}`` leaves all redaction to the handler.
        """
        handler, seen = recording(respond) if respond is not None else (None, [])
        result = run_handler(
            self.provider,
            capability,
            self.operation_inputs[capability] if payload is None else payload,
            self.credentials if credentials is None else credentials,
            handler=handler,
            api_base=api_base,
            timeout=timeout,
            secrets=secrets,
        )
        return result, seen

    def documented_answer(self, capability: str) -> Respond:
        """The documented success answer, after :meth:`check_operation_request`."""

        def respond(request: httpx.Request) -> httpx.Response:
            self.check_operation_request(capability, request)
            return self.operation_response(capability, request)

        return respond

    def success_status(self, capability: str, request: httpx.Request) -> int:
        """The status of the provider's documented success answer."""
        return self.operation_response(capability, request).status_code


def _sent(request: httpx.Request, value: str) -> bool:
    """Whether ``value`` is in the request's URL or body, as JSON or form-encoded."""
    raw = str(request.url) + request.content.decode(errors="replace")
    return value in raw or value in unquote_plus(raw)


class OperationSuccessTests(OperationContractBase):
    """A handler for every capability, and the core's output from the documented answer."""

    def test_every_capability_has_a_handler_and_an_input(self) -> None:
        problems = provider_problems(self.provider)
        if problems:
            pytest.fail(
                "relaykit would not load the provider: " + "; ".join(problems), pytrace=False
            )
        for capability in self.provider.capabilities:
            contract = STANDARD_CONTRACTS.get(capability)
            if contract is not None and capability not in self.operation_inputs:
                pytest.fail(
                    f"Give operation_inputs[{capability!r}] a valid input for the test "
                    f"(the fields of {contract.input.__name__}).",
                    pytrace=False,
                )

    def test_the_documented_answer_succeeds_with_the_core_output(self, capability: str) -> None:
        result, _ = self.operate(capability, self.documented_answer(capability))
        if result.outcome is not OperationOutcome.SUCCEEDED:
            output = STANDARD_CONTRACTS[capability].output.__name__
            pytest.fail(
                f"The {capability!r} handler did not succeed on the provider's success "
                f"answer: {result.outcome}: {result.message}. It must return "
                f"OperationResult.succeeded({output}(...)).",
                pytrace=False,
            )

    def test_from_overrides_the_integrations_number(self, message_capability: str) -> None:
        payload = {**self.operation_inputs[message_capability], "from": OTHER_SENDER}
        result, seen = self.operate(
            message_capability, self.documented_answer(message_capability), payload=payload
        )
        assert result.outcome is OperationOutcome.SUCCEEDED, result
        assert result.result.from_ == OTHER_SENDER
        assert any(_sent(request, OTHER_SENDER) for request in seen), "from was not sent"

    def test_without_from_the_integrations_number_is_the_sender(
        self, message_capability: str
    ) -> None:
        payload = dict(self.operation_inputs[message_capability])
        payload.pop("from", None)
        result, seen = self.operate(
            message_capability, self.documented_answer(message_capability), payload=payload
        )
        assert result.outcome is OperationOutcome.SUCCEEDED, result
        sender = result.result.from_
        assert sender in {str(v) for v in self.credentials.values()}, (
            f"the sender {sender!r} is not the integration's number"
        )
        assert any(_sent(request, sender) for request in seen), "the sender was not sent"

    @pytest.mark.parametrize(
        "body",
        ["not JSON", "an HTML page", "a JSON list", "a JSON object of other fields", "none"],
    )
    def test_a_2xx_without_the_documented_body_is_unknown(self, capability: str, body: str) -> None:
        def respond(request: httpx.Request) -> httpx.Response:
            status = self.success_status(capability, request)
            if body == "not JSON":
                return httpx.Response(status, text=f"{{not json {CANARY}")
            if body == "an HTML page":
                html = f"<html>{CANARY}</html>"
                return httpx.Response(status, text=html, headers={"content-type": "text/html"})
            if body == "a JSON list":
                return httpx.Response(status, json=[CANARY])
            if body == "a JSON object of other fields":
                return httpx.Response(status, json={"message": CANARY, "error": CANARY})
            return httpx.Response(status)

        # The provider may have acted: no fallback to another provider, hence unknown.
        result, seen = self.operate(capability, respond)
        assert result.outcome is OperationOutcome.UNKNOWN, result
        assert result.status_code == self.success_status(capability, seen[0])
        assert result.result is None
        assert CANARY not in result.message, "the body was repeated into the message"


class OperationRefusalTests(OperationContractBase):
    """Refused credentials are ``auth_failed``; another refusal is ``rejected``."""

    @pytest.mark.parametrize("status", [401, 403])
    def test_refused_credentials_are_auth_failed(self, capability: str, status: int) -> None:
        result, _ = self.operate(capability, lambda request: self.error_response(request, status))
        assert result.outcome is OperationOutcome.AUTH_FAILED, result
        assert result.status_code == status
        assert self.expected_message(status) in result.message

    def test_a_401_without_json_is_auth_failed(self, capability: str) -> None:
        result, _ = self.operate(
            capability,
            lambda request: httpx.Response(
                401, text="Unauthorized", headers={"content-type": "text/plain"}
            ),
        )
        assert result.outcome is OperationOutcome.AUTH_FAILED, result
        assert "HTTP 401" in result.message

    def test_a_404_page_is_rejected_with_the_status_line(self, capability: str) -> None:
        result, _ = self.operate(capability, lambda request: httpx.Response(404, text="Not Found"))
        assert result.outcome is OperationOutcome.REJECTED, result
        assert result.status_code == 404
        assert "HTTP 404" in result.message


class OperationThrottlingTests(OperationContractBase):
    """Rate limits and server errors are ``transient``: another provider may serve."""

    def test_a_rate_limited_operation_is_transient_with_retry_after(self, capability: str) -> None:
        def respond(request: httpx.Request) -> httpx.Response:
            response = self.error_response(request, 429)
            response.headers["Retry-After"] = "7"
            return response

        result, _ = self.operate(capability, respond)
        assert result.outcome is OperationOutcome.TRANSIENT, result
        assert result.status_code == 429
        assert result.retry_after == 7.0

    def test_a_rate_limited_operation_without_retry_after_is_transient(
        self, capability: str
    ) -> None:
        result, _ = self.operate(capability, lambda request: self.error_response(request, 429))
        assert result.outcome is OperationOutcome.TRANSIENT, result
        assert result.retry_after is None

    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_server_errors_are_transient(self, capability: str, status: int) -> None:
        result, _ = self.operate(capability, lambda request: self.error_response(request, status))
        assert result.outcome is OperationOutcome.TRANSIENT, result
        assert result.status_code == status

    def test_a_503_html_page_is_transient(self, capability: str) -> None:
        result, _ = self.operate(
            capability,
            lambda request: httpx.Response(
                503, text="<html>Service Unavailable</html>", headers={"content-type": "text/html"}
            ),
        )
        assert result.outcome is OperationOutcome.TRANSIENT, result
        assert result.message == "HTTP 503 Service Unavailable"


class OperationTransportTests(OperationContractBase):
    """Where requests go, redirects, and a provider that cannot be reached or does not answer."""

    def test_an_operation_uses_the_api_base_override(self, capability: str) -> None:
        _, seen = self.operate(
            capability, lambda request: httpx.Response(503), api_base=OVERRIDE_BASE
        )
        assert seen, "the handler sent no request"
        assert all(str(r.url).startswith(OVERRIDE_BASE) for r in seen), (
            f"the handler must send paths relative to ctx.http's base URL, not {seen[0].url}"
        )

    def test_an_operation_keeps_identifiers_in_their_path_segment(self, capability: str) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            return self.error_response(request, 401)

        _, baseline = self.operate(capability, refuse)
        for what, credentials in self.stray_credentials():
            result, seen = self.operate(capability, refuse, credentials=credentials)
            self.assert_same_route(baseline, seen, what)
            # Credentials no request can carry make the integration unusable, not the request.
            assert result.outcome is OperationOutcome.AUTH_FAILED, (what, result)

    def test_a_redirect_is_not_followed(self, capability: str) -> None:
        result, seen = self.operate(
            capability,
            lambda request: httpx.Response(302, headers={"location": "https://example.com/"}),
        )
        assert len(seen) == 1, "the redirect was followed"
        assert result.outcome is OperationOutcome.UNKNOWN, result

    def test_a_refused_connection_leaves_an_operation_transient(self, capability: str) -> None:
        # Nothing was sent: another provider may serve.
        result, _ = self.operate(capability, None, api_base=closed_port_url())
        assert result.outcome is OperationOutcome.TRANSIENT, result
        assert "could not reach" in result.message

    def test_a_read_timeout_is_unknown(self, capability: str) -> None:
        # The request went out: the provider may have acted.
        with silent_server() as base:
            result, _ = self.operate(capability, None, api_base=base, timeout=0.3)
        assert result.outcome is OperationOutcome.UNKNOWN, result
        assert "in time" in result.message


#: ``operate``'s ``secrets``: the core redacts the sensitive credentials, or nothing does but
#: the handler (``classify_operation_response(..., secrets=...)``).
REDACTION: dict[str, dict[str, Any] | None] = {"by-the-core": None, "by-the-handler": {}}


class OperationSecretTests(OperationContractBase):
    """No credential value reaches a result, whoever echoes it."""

    @pytest.mark.parametrize("redaction", list(REDACTION))
    @pytest.mark.parametrize("status", [400, 401, 429, 503])
    def test_an_echoed_secret_never_reaches_the_message(
        self, capability: str, status: int, redaction: str
    ) -> None:
        result, _ = self.operate(
            capability,
            lambda request: self.error_echoing_secrets(request, status),
            secrets=REDACTION[redaction],
        )
        assert result.outcome is not OperationOutcome.SUCCEEDED, result
        self.assert_no_secret(result)
        assert self.expected_error_message in result.message

    @pytest.mark.parametrize("redaction", list(REDACTION))
    @pytest.mark.parametrize("body", ["documented", "undocumented"])
    def test_a_2xx_echoing_a_secret_keeps_it_out(
        self, capability: str, body: str, redaction: str
    ) -> None:
        echoed = {f"echo_{i}": secret for i, secret in enumerate(self.secret_values())}
        assert echoed, "give the sensitive credentials canary values"

        def respond(request: httpx.Request) -> httpx.Response:
            documented = self.operation_response(capability, request)
            fields = json_body(documented) if body == "documented" else None
            if not isinstance(fields, dict):
                fields = {}
            return httpx.Response(documented.status_code, json={**fields, **echoed})

        result, _ = self.operate(capability, respond, secrets=REDACTION[redaction])
        self.assert_no_secret(result)


class OperationContractTests(
    OperationSuccessTests,
    OperationRefusalTests,
    OperationThrottlingTests,
    OperationTransportTests,
    OperationSecretTests,
):
    """The whole operation contract: every concern above, for every capability."""
