"""A client generated from the served document (openapi-python-client) drives the live server.

The document is fetched from the running server, the generator's own command line turns it
into a package in a temporary folder, and that package creates a Twilio integration (the
messaging stand-in plays Twilio), reads it back and lists it, with typed results. What the
generator could not model it prints as warnings: any that touches the integration endpoints
fails the test, the rest are shown in its output.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from relaykit.testing.standin import stand_in

from ..conftest import Server, cli_env, run_cli, start_server, stop_server
from ..messaging_standin import Messaging

PACKAGE = "relaykit_generated_client"
INTEGRATIONS = "/api/v1/integrations"
INTEGRATION = "/api/v1/integrations/{integration_id}"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
# Where each of the generator's warnings starts: an endpoint's, or a component schema's.
HEADER = re.compile(
    r"^(?:(?:WARNING|ERROR) parsing |Unable to (?:parse|process) schema )", re.MULTILINE
)
FOOTER = "If you believe this was a mistake"
# 0.29 prints some status codes as the repr of its UntrustedString: say so instead.
UNTRUSTED = re.compile(
    r"<openapi_python_client\.schema\.untrusted_string\.UntrustedString object at 0x[0-9a-f]+>"
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    home = tmp_path / "home"
    with stand_in(Messaging()) as providers:
        env = cli_env(
            home,
            {
                "RELAYKIT_TWILIO_API_BASE": providers.base_url,
                "RELAYKIT_PLIVO_API_BASE": providers.base_url,
                "RELAYKIT_STRIPE_API_BASE": providers.base_url,  # nothing real is ever called
            },
        )
        run_cli(["tenants", "create", "acme"], env)
        token = (
            run_cli(["tokens", "create", "--tenant", "acme"], env).stdout.strip().splitlines()[-1]
        )
        server = start_server(env, tmp_path / "server.log")
        try:
            yield server, token
        finally:
            stop_server(server)


def generate(document: Path, folder: Path) -> tuple[ModuleType, list[str]]:
    """Run the generator's CLI; the package, and its warnings as blocks of text."""
    config = folder / "generator.json"
    config.write_text(json.dumps({"post_hooks": []}))  # no ruff run on the generated code
    output = folder / "generated" / PACKAGE
    command = [
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(document),
        "--output-path",
        str(output),
        "--meta",
        "none",
        "--config",
        str(config),
        "--overwrite",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    text = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"the generator failed:\n{text}"
    text = UNTRUSTED.sub("<value not shown by the generator>", text.split(FOOTER)[0])
    starts = [m.start() for m in HEADER.finditer(text)]
    ends = [*starts[1:], len(text)] if starts else []
    warnings = [text[a:b].strip() for a, b in zip(starts, ends, strict=True)]
    sys.path.insert(0, str(output.parent))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]
    return importlib.import_module(PACKAGE), warnings


def endpoint(package: ModuleType, method: str, path: str) -> ModuleType:
    """The generated module of ``method path``, found by the URL it calls (module names
    follow operationIds, which are not this test's business)."""
    folder = Path(package.__file__).parent / "api"  # type: ignore[arg-type]
    pattern = re.compile(rf'"method":\s*"{method.lower()}",\s*"url":\s*"{re.escape(path)}"')
    found = [
        file for file in folder.rglob("*.py") if pattern.search(file.read_text(encoding="utf-8"))
    ]
    assert len(found) == 1, f"generated module for {method} {path}: {found}"
    relative = found[0].relative_to(folder.parent).with_suffix("")
    return importlib.import_module(".".join((PACKAGE, *relative.parts)))


def typed_body(module: ModuleType, payload: dict[str, Any]) -> Any:
    """``payload`` as the model the generated function takes for ``body`` (the member of a
    union that keeps all of it, for a oneOf)."""
    hints = typing.get_type_hints(module.sync_detailed)
    assert "body" in hints, f"{module.__name__} takes no request body: {list(hints)}"
    candidates = typing.get_args(hints["body"]) or (hints["body"],)
    models = [c for c in candidates if hasattr(c, "from_dict")]
    assert models, f"{module.__name__}: body is not a generated model: {hints['body']}"
    for model in models:
        try:
            value = model.from_dict(payload)
        except (KeyError, TypeError, ValueError):
            continue
        if value.to_dict() == payload:
            return value
    raise AssertionError(f"no model of {models} holds {payload}")


def value_of(item: Any) -> Any:
    return getattr(item, "value", item)  # an Enum member or the plain value


def test_a_generated_client_creates_reads_and_lists_an_integration(
    live: tuple[Server, str], tmp_path: Path
) -> None:
    server, token = live
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(f"{server.base_url}/schema/openapi.json", timeout=10).content)
    package, warnings = generate(document, tmp_path)
    if warnings:
        print("generator warnings:\n\n" + "\n\n".join(warnings))  # shown with -rA or on failure
    # Every part of the document must be one the generator can model: a warning means some
    # operation, status or schema is missing from the generated client.
    problems: list[str] = []
    if warnings:
        problems.append(
            "the generator could not model all of the document:\n\n" + "\n\n".join(warnings)
        )
    try:
        use_the_client(package, server, token)
    except Exception as exc:  # reported with the generator's warnings, which may explain it
        problems.append(f"the generated client against the live server: {exc!r}")
    assert not problems, "\n\n----\n\n".join(problems)


def use_the_client(package: ModuleType, server: Server, token: str) -> None:
    client = package.AuthenticatedClient(
        base_url=server.base_url, token=token, raise_on_unexpected_status=True
    )
    create = endpoint(package, "POST", INTEGRATIONS)
    read = endpoint(package, "GET", INTEGRATION)
    listing = endpoint(package, "GET", INTEGRATIONS)

    body = typed_body(
        create,
        {
            "provider": "twilio",
            "credentials": {
                "account_sid": ACCOUNT_SID,
                "auth_token": "stand-in-token-0001",
                "from_number": "+15550100000",
            },
            "enabled_capabilities": ["send_sms"],
        },
    )
    with client:
        created = create.sync_detailed(client=client, body=body)
        assert created.status_code == 201, created.content
        assert created.parsed is not None, f"201 not parsed into a model: {created.content!r}"
        integration = created.parsed.data
        assert value_of(integration.provider) == "twilio"
        assert value_of(integration.status) in ("pending_verify", "active")
        integration_id = integration.id

        fetched = read.sync_detailed(integration_id, client=client)
        assert fetched.status_code == 200, fetched.content
        assert fetched.parsed is not None, f"200 not parsed into a model: {fetched.content!r}"
        assert fetched.parsed.data.id == integration_id
        assert value_of(fetched.parsed.data.provider) == "twilio"
        assert value_of(fetched.parsed.data.status) in ("pending_verify", "active")

        listed = listing.sync_detailed(client=client)
        assert listed.status_code == 200, listed.content
        assert listed.parsed is not None, f"200 not parsed into a model: {listed.content!r}"
        assert [item.id for item in listed.parsed.data] == [integration_id]
        assert value_of(listed.parsed.data[0].provider) == "twilio"
        assert listed.parsed.meta.total == 1
