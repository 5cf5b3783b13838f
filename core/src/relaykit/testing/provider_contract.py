"""``ProviderContractTests``: everything relaykit requires of a provider package, as tests.

Subclass it in the package's tests and fill in the class attributes; every check below then
runs against the provider as it is installed (through its entry point, as relaykit loads
it). Each failure says what to fix. It includes every check of
:class:`~relaykit.testing.contract.VerifierContractTests` and of
:class:`~relaykit.testing.operation_contract.OperationContractTests`.

Example:
    .. code-block:: python

        class TestAcme(ProviderContractTests):
            entry_point = "acme"                      # [project.entry-points.relaykit]
            credentials = {"api_key": "key_canary_0123456789", "sender": "+15550100000"}
            expected_error_message = "Invalid API key"
            operation_inputs = {"send_sms": {"to": "+15550100001", "body": "hi"}}

            def check_request(self, request): ...          # the verifier's documented request
            def accepted_response(self, request): ...      # its documented answers
            def error_response(self, request, status): ...
            def operation_response(self, capability, request): ...  # a documented success
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from typing import Any, ClassVar

import anyio
import httpx
import pytest

from relaykit.hookspecs import ENTRY_POINT_GROUP
from relaykit.plugins import make_plugin_manager
from relaykit.provider_http import ProviderContext, make_provider_client
from relaykit.providers import SLUG_PATTERN, Provider
from relaykit.testing.contract import VerifierContractTests
from relaykit.testing.http import run_handler
from relaykit.testing.operation_contract import OperationContractTests

#: Credential field names that hold secrets; such a field must be ``sensitive=True``.
SECRET_LOOKING = re.compile(r"(token|secret|password|passwd|private|api_?key|auth_?key)", re.I)


class ProviderContractTests(VerifierContractTests, OperationContractTests):
    #: the name of the provider's entry point in the ``relaykit`` group
    entry_point: ClassVar[str]
    #: the provider's name, if it differs from the entry point's
    provider_name: ClassVar[str | None] = None

    # -- loading, as relaykit loads it -----------------------------------------------------------

    @property
    def provider(self) -> Provider:  # type: ignore[override]
        return self._load()

    def _load(self) -> Provider:
        found = [
            ep
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.name == self.entry_point
        ]
        if not found:
            pytest.fail(
                f"No entry point {self.entry_point!r} in the {ENTRY_POINT_GROUP!r} group. Add\n"
                f"    [project.entry-points.{ENTRY_POINT_GROUP}]\n"
                f'    {self.entry_point} = "<your module>"\n'
                "to pyproject.toml and install the package again (pip install -e .).",
                pytrace=False,
            )
        try:
            plugin = found[0].load()
        except Exception as exc:
            pytest.fail(
                f"The entry point {self.entry_point!r} = {found[0].value!r} does not import: "
                f"{type(exc).__name__}: {exc}",
                pytrace=False,
            )
        pm = make_plugin_manager(load_entrypoints=False, plugins=[(self.entry_point, plugin)])
        catalog = pm.catalog()
        name = self.provider_name or self.entry_point
        provider = catalog.get(name)
        if provider is None:
            problems = "; ".join(e.error for e in catalog.errors) or (
                f"it declares {', '.join(catalog.names) or 'no providers'}"
            )
            pytest.fail(
                f"relaykit would not load provider {name!r} from this package: {problems}",
                pytrace=False,
            )
        return provider

    # -- the contract ----------------------------------------------------------------------------

    def test_entry_point_resolves(self) -> None:
        assert self._load().name == (self.provider_name or self.entry_point)

    def test_names_are_slugs(self) -> None:
        provider = self.provider
        names = [("provider name", provider.name), ("category", provider.category)]
        names += [("capability", c) for c in provider.capabilities]
        names += [("credential field", f) for f in provider.credential_schema]
        for what, value in names:
            if not SLUG_PATTERN.match(value):
                pytest.fail(
                    f"The {what} {value!r} is not a slug: use lowercase ASCII letters, digits "
                    "and underscores, starting with a letter.",
                    pytrace=False,
                )

    def test_credential_schema_marks_secrets_sensitive(self) -> None:
        schema = self.provider.credential_schema
        for name, field in schema.items():
            if SECRET_LOOKING.search(name) and not field.sensitive:
                pytest.fail(
                    f"The credential field {name!r} looks secret but is not sensitive: declare "
                    f"it CredentialField(sensitive=True) (or rename it if it is public).",
                    pytrace=False,
                )
        if not any(field.sensitive for field in schema.values()):
            pytest.fail(
                "No credential field is marked sensitive=True: the field that authenticates "
                "(an API key, a token) must be, so that relaykit seals and masks it.",
                pytrace=False,
            )
        for name in self.provider.sensitive_fields:
            if not self.credentials.get(name) and schema[name].required:
                pytest.fail(f"Give credentials[{name!r}] a canary value.", pytrace=False)

    @pytest.mark.parametrize("status", [200, 401, 403, 429, 500, 503])
    def test_verifier_answers_without_raising(self, status: int) -> None:
        def respond(request: httpx.Request) -> httpx.Response:
            if status == 200:
                return self.accepted_response(request)
            return self.error_response(request, status)

        async def call() -> Any:
            async with make_provider_client(
                self.provider, {}, transport=httpx.MockTransport(respond)
            ) as client:
                return await self.provider.verify(
                    self.credentials, ProviderContext(client, str(client.base_url))
                )

        try:
            anyio.run(call)
        except Exception as exc:
            pytest.fail(
                f"The verifier raised {type(exc).__name__} on an HTTP {status} answer. Classify "
                "it instead: return classify_response(...) or VerificationResult.rejected/"
                "transient(...); only transport errors may propagate.",
                pytrace=False,
            )

    def test_no_credential_reaches_a_message_or_a_log_line(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        secrets = self.secret_values()

        def echo(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                401, json={"error": " ".join(secrets), "message": " ".join(secrets)}
            )

        result, _ = self.verify(echo)
        messages = [result.message]
        for capability, payload in self.operation_inputs.items():
            if capability in self.provider.operations:
                messages.append(
                    run_handler(
                        self.provider, capability, payload, self.credentials, handler=echo
                    ).message
                )
        for secret in secrets:
            for message in messages:
                if secret in message:
                    pytest.fail(
                        f"A credential value reached a result message: {message!r}", pytrace=False
                    )
            for record in caplog.records:
                if secret in record.getMessage() or secret in (record.exc_text or ""):
                    pytest.fail(
                        f"A credential value reached a log line ({record.name}): never log "
                        "credentials or the request that carries them.",
                        pytrace=False,
                    )
