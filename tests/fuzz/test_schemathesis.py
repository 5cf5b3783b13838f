"""Schemathesis against the live server: the served OpenAPI document must describe what the
server really does.

Every operation the document lists is called with generated parameters and bodies (a fixed
seed, derandomized, a bounded number of examples per operation), with the tenant's bearer
token and, separately, without any token; then the integration lifecycle runs twice: once as
a fixed chain (create, get, patch, activate, disable, activate, delete, get) and once as
schemathesis's state machine over the links the document declares or that schemathesis
infers from it. A response fails the run when it is a 5xx, has a status code the operation
does not declare, a content type it does not declare, a body that does not match the
declared schema, or a JSON body whose status declares no schema at all (``{}``).

The checks are the point: a failure here is the document's (or the server's) to fix, not
this file's to loosen. Run with ``tox -e fuzz``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import hypothesis
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import LiveApi

SEED = 20240611
MAX_EXAMPLES = 25  # per operation, in the fuzzing phase
ANONYMOUS_EXAMPLES = 3  # per operation, without a token
STATEFUL_SCENARIOS = 20
STATEFUL_SECONDS = 45
MIN_OPERATIONS = 15
API_PREFIX = "/api/v1"
INTEGRATIONS = f"{API_PREFIX}/integrations"
INTEGRATION = f"{INTEGRATIONS}/{{integration_id}}"


# -- loading ---------------------------------------------------------------------------------


def load_schema(live_api: LiveApi, tenant: str | None) -> schemathesis.BaseSchema:
    """The document as served, with the tenant's token on every call (none for ``None``)."""
    # Schemathesis's own defaults for what it runs itself (the state machine's rule order);
    # the runs below pass their hypothesis settings explicitly.
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "base-url": live_api.base_url,
            "request-timeout": 15,
            "headers": live_api.auth(tenant) if tenant else {},
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # Without a token the bearer scheme must not be filled in by the generator.
                "with-security-parameters": tenant is not None,
            },
        }
    )
    schema = schemathesis.openapi.from_url(live_api.schema_url, config=config, timeout=15)
    results = list(schema.get_all_operations())
    broken = [str(result.err()) for result in results if isinstance(result, Err)]
    assert not broken, "operations schemathesis cannot use:\n" + "\n".join(broken)
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= MIN_OPERATIONS, (
        f"the served document lists {len(operations)} operations, expected at least "
        f"{MIN_OPERATIONS}: {[op.label for op in operations]}"
    )
    return schema


# -- checks ----------------------------------------------------------------------------------


def _resolve(document: dict[str, Any], node: Any) -> Any:
    """Follow local ``$ref``s (``#/components/...``) of the raw document."""
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref: str = node["$ref"]
        assert ref.startswith("#/"), f"non-local $ref {ref}"
        node = document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        seen += 1
        assert seen < 50, f"$ref loop at {ref}"
    return node


def response_schema_is_declared(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """A JSON body must have a schema to conform to: ``{}`` (or no ``schema``) declares
    nothing, so ``response_schema_conformance`` would pass any body at all."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if "json" not in content_type or not response.content:
        return
    definition = case.operation.responses.find_by_status_code(response.status_code)
    if definition is None:
        return  # status_code_conformance reports it
    document = case.operation.schema.raw_schema
    declared = _resolve(document, dict(definition.definition))
    media = _resolve(document, (declared.get("content") or {}).get(content_type.split(";")[0]))
    schema = _resolve(document, (media or {}).get("schema"))
    if schema in (None, {}, True):
        raise AssertionError(
            f"Response schema not declared\n{case.operation.label} answered "
            f"{response.status_code} {content_type}, whose declared schema is {schema!r}"
        )


CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_schema_is_declared,
]


# -- every operation, generated inputs -----------------------------------------------------
#
# Driven here rather than through ``schema.parametrize()`` with ``schemathesis.pytest.
# from_fixture``: the lazy loader of schemathesis 4.32 reads ``Function._nodeid``, which
# pytest 9.2 no longer has. The loop below also keeps going after a failure, so one run lists
# every distinct problem of every operation (by check and status code), not only the first.


def failures_of(exc: BaseException) -> list[BaseException]:
    return list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]


def describe(failure: BaseException) -> tuple[str, str]:
    title = getattr(failure, "title", None) or type(failure).__name__
    message = getattr(failure, "message", None) or str(failure)
    return str(title), str(message).strip()


def fuzz(
    schema: schemathesis.BaseSchema,
    headers: dict[str, str],
    *,
    max_examples: int,
    expect_status: int | None = None,
) -> dict[str, dict[str, str]]:
    """Every operation, positive and negative inputs; the distinct failures per operation
    (keyed by title and status), each with one curl command that shows it."""
    found: dict[str, dict[str, str]] = {}
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        seen = found.setdefault(operation.label, {})
        statuses: Counter[int] = Counter()
        expected = expect_status if expect_status is None or requires_a_token(operation) else None
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            try:
                one_mode(strategy, session, headers, max_examples, expected, seen, statuses)
            except hypothesis.errors.Unsatisfiable:
                # Nothing to negate (no parameters, no body): the positive run covered it.
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
        print(
            f"{operation.label}: {sum(statuses.values())} calls, {dict(sorted(statuses.items()))}"
        )
        if not seen:
            del found[operation.label]
    return found


def requires_a_token(operation: Any) -> bool:
    """Whether the document says the operation needs credentials (its own ``security``, or
    the document's; an empty requirement ``{}`` among them makes them optional)."""
    requirements = operation.definition.raw.get(
        "security", operation.schema.raw_schema.get("security", [])
    )
    return bool(requirements) and all(requirements)


def one_mode(
    strategy: Any,
    session: requests.Session,
    headers: dict[str, str],
    max_examples: int,
    expect_status: int | None,
    seen: dict[str, str],
    statuses: Counter[int],
) -> None:
    @hypothesis.settings(
        max_examples=max_examples,
        derandomize=True,  # a fixed seed: the same cases on every run
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        for name in [n for n in (case.headers or {}) if n.lower() == "authorization"]:
            del case.headers[name]  # only the token given here, or none
        response = None
        problems: list[tuple[str, str]] = []
        try:
            response = case.call_and_validate(
                headers=headers, checks=CHECKS, session=session, timeout=15
            )
        except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is a BaseExceptionGroup
            problems += [describe(f) for f in failures_of(exc)]
        if response is not None:
            statuses[response.status_code] += 1
        if response is not None and expect_status not in (None, response.status_code):
            problems.append(
                (f"Not {expect_status}", f"answered {response.status_code} without a token")
            )
        for title, message in problems:
            status = message.split("\n")[0]
            key = f"{title} [{status}]" if "Received" in status else title
            seen.setdefault(key, f"{message}\n  e.g. {case.as_curl_command(headers)}")

    run()


def report(found: dict[str, dict[str, str]]) -> str:
    lines = []
    for label, problems in sorted(found.items()):
        lines.append(f"{label}:")
        for key, detail in sorted(problems.items()):
            lines.append(f"  - {key}: " + detail.replace("\n", "\n      "))
    return "\n".join(lines)


def test_every_operation_with_a_token(live_api: LiveApi) -> None:
    schema = load_schema(live_api, "fuzz")
    found = fuzz(schema, live_api.auth("fuzz"), max_examples=MAX_EXAMPLES)
    assert not found, f"{len(found)} operation(s) break the document:\n{report(found)}"


def test_every_operation_without_a_token_is_a_declared_401(live_api: LiveApi) -> None:
    schema = load_schema(live_api, None)
    found = fuzz(schema, {}, max_examples=ANONYMOUS_EXAMPLES, expect_status=401)
    assert not found, f"{len(found)} operation(s) without a token:\n{report(found)}"


def test_the_document_lists_the_api(live_api: LiveApi) -> None:
    """The fuzzing above cannot pass on an empty or partial document."""
    schema = load_schema(live_api, "fuzz")
    labels = {result.ok().label for result in schema.get_all_operations()}
    wanted = {
        f"GET {INTEGRATIONS}",
        f"POST {INTEGRATIONS}",
        f"GET {INTEGRATION}",
        f"PATCH {INTEGRATION}",
        f"DELETE {INTEGRATION}",
        f"POST {INTEGRATION}/activate",
        f"POST {INTEGRATION}/disable",
        f"GET {INTEGRATIONS}/providers",
    }
    assert wanted <= labels, f"missing from the document: {sorted(wanted - labels)}"
    assert len(labels) >= MIN_OPERATIONS


# -- the lifecycle, as a fixed chain -------------------------------------------------------


class Chain:
    """Calls through schemathesis's cases, so every response gets the same checks."""

    def __init__(self, schema: schemathesis.BaseSchema, headers: dict[str, str]) -> None:
        self.schema = schema
        self.headers = headers
        self.session = requests.Session()
        self.failures: list[str] = []

    def call(
        self,
        method: str,
        path: str,
        *,
        integration_id: str | None = None,
        body: Any = None,
        expect: int,
    ) -> requests.Response | Any:
        operation = self.schema[path][method]
        kwargs: dict[str, Any] = {}
        if integration_id is not None:
            kwargs["path_parameters"] = {"integration_id": integration_id}
        if body is not None:
            kwargs["body"] = body
            kwargs["media_type"] = "application/json"
        case = operation.Case(headers=dict(self.headers), **kwargs)
        response = case.call(session=self.session, timeout=15)
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # collect all: every broken step
            self.failures.append(f"{method} {path} -> {response.status_code}: {exc}")
        assert response.status_code == expect, (
            f"{method} {path} answered {response.status_code}, expected {expect}: {response.text}"
        )
        return response


def stripe_body() -> dict[str, Any]:
    return {
        "provider": "stripe",
        "credentials": {"publishable_key": "pk_test_fuzz", "secret_key": "sk_test_good_fuzz_0001"},
        "enabled_capabilities": ["initiate_payment", "verify_payment"],
        "metadata": {"environment": "test"},
    }


def test_integration_lifecycle_conforms(live_api: LiveApi) -> None:
    schema = load_schema(live_api, "lifecycle")
    for label in (f"POST {INTEGRATIONS}", f"PATCH {INTEGRATION}"):
        method, path = label.split(" ")
        definition = schema[path][method].definition.raw
        body = _resolve(schema.raw_schema, definition.get("requestBody"))
        assert body and "application/json" in (body.get("content") or {}), (
            f"{label} declares no application/json request body"
        )
    chain = Chain(schema, live_api.auth("lifecycle"))
    created = chain.call("POST", INTEGRATIONS, body=stripe_body(), expect=201)
    integration_id = created.json()["data"]["id"]
    deadline = time.monotonic() + 30
    while True:  # the stand-in accepts sk_test_good_: pending_verify, then active
        got = chain.call("GET", INTEGRATION, integration_id=integration_id, expect=200)
        if got.json()["data"]["status"] == "active":
            break
        assert time.monotonic() < deadline, f"never became active: {got.text}"
        time.sleep(0.2)
    chain.call(
        "PATCH",
        INTEGRATION,
        integration_id=integration_id,
        body={"metadata": {"environment": "staging"}},
        expect=200,
    )
    # activate on an active integration is the lifecycle's 409: it must be declared too
    chain.call("POST", f"{INTEGRATION}/activate", integration_id=integration_id, expect=409)
    chain.call("POST", f"{INTEGRATION}/disable", integration_id=integration_id, expect=200)
    chain.call("POST", f"{INTEGRATION}/activate", integration_id=integration_id, expect=200)
    chain.call("GET", INTEGRATIONS, expect=200)
    chain.call("DELETE", INTEGRATION, integration_id=integration_id, expect=200)
    chain.call("GET", INTEGRATION, integration_id=integration_id, expect=404)
    assert not chain.failures, "the lifecycle's responses break the document:\n\n" + (
        "\n\n".join(chain.failures)
    )


# -- the lifecycle, as schemathesis's state machine -----------------------------------------


def test_integration_lifecycle_statefully(live_api: LiveApi) -> None:
    """create -> get -> patch -> activate -> disable -> delete as the document links them
    (OpenAPI links, or the links schemathesis infers from response schemas).

    Failures are recorded, not raised, as schemathesis's own stateful runner does: against a
    live server a replayed scenario draws differently (the server's state moved on), which
    hypothesis reports as ``Flaky`` and which would otherwise hide the real failure. A run
    that ends that way is started again, up to a bounded number of scenarios and seconds.
    """
    schema = load_schema(live_api, "stateful").include(
        path_regex=f"^{INTEGRATIONS}(/\\{{integration_id\\}}(/.*)?)?$"
    )
    machine = schema.as_state_machine()
    found: dict[str, str] = {}
    stats = {"scenarios": 0, "steps": 0, "linked": 0}
    reached: set[str] = set()

    class Lifecycle(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            stats["scenarios"] += 1

        def step(self, input: Any) -> Any:
            stats["steps"] += 1
            if input.transition is not None and input.is_applied:
                stats["linked"] += 1
                reached.add(f"{input.transition.parent_id} -> {input.case.operation.label}")
            return super().step(input)

        def validate_response(
            self,
            response: Any,
            case: schemathesis.Case,
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            try:
                case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)
            except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is a BaseExceptionGroup
                for failure in failures_of(exc):
                    title, message = describe(failure)
                    found.setdefault(
                        f"{case.operation.label}: {title} [{message.splitlines()[0]}]",
                        f"{message}\n  e.g. {case.as_curl_command()}",
                    )

    deadline = time.monotonic() + STATEFUL_SECONDS
    while stats["scenarios"] < STATEFUL_SCENARIOS and time.monotonic() < deadline:
        try:
            Lifecycle.run(
                settings=hypothesis.settings(
                    max_examples=STATEFUL_SCENARIOS,
                    stateful_step_count=8,
                    derandomize=True,
                    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                    database=None,
                    deadline=None,
                    suppress_health_check=list(hypothesis.HealthCheck),
                )
            )
        except hypothesis.errors.Flaky:
            continue
    print(f"stateful: {stats}; links followed: {sorted(reached)}")
    assert not found, f"{len(found)} problem(s) in stateful runs:\n" + "\n".join(
        f"  - {key}: " + detail.replace("\n", "\n      ") for key, detail in sorted(found.items())
    )
    assert stats["linked"] > 0, (
        f"no scenario followed a link from one integration operation to another ({stats}): "
        "the document declares no OpenAPI links and schemathesis inferred none that worked"
    )
