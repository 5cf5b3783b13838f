"""A third party's provider package, built and installed for real, joins the catalog; a
broken one is skipped and reported while the others load; a clashing one stops the start."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import cli_env, free_port, pip_install_into, run_cli

pytestmark = pytest.mark.slow

PLUGIN_SOURCE = """
from relaykit import (
    CredentialField, MessageResult, OperationResult, Provider, VerificationResult, hookimpl,
)

async def verify(credentials, ctx):
    response = await ctx.http.get("/v1/me", auth=(credentials["api_key"], ""))
    if response.status_code == 200:
        return VerificationResult.accepted()
    return VerificationResult.rejected(f"HTTP {{response.status_code}}")

async def send_sms(payload, credentials, ctx):
    response = await ctx.http.post("/v1/sms", json={{"to": payload.to, "text": payload.body}})
    body = response.json()
    return OperationResult.succeeded(
        MessageResult(provider_message_id=body["id"], provider_status="sent",
                      to=payload.to, from_=payload.from_ or credentials.get("sender") or "")
    )

@hookimpl
def relaykit_providers():
    yield Provider(
        name="{provider}",
        display_name="{display}",
        category="communication",
        capabilities=("send_sms",),
        credential_schema={{
            "api_key": CredentialField(sensitive=True),
            "sender": CredentialField(required=False),
        }},
        api_base="https://api.example.invalid",
        verify=verify,
        operations={{"send_sms": send_sms}},
    )
"""


def make_distribution(root: Path, dist: str, module: str, source: str) -> Path:
    """A provider package as a third party would lay it out: pyproject, entry point, module."""
    project = root / dist
    (project / "src" / module).mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "{dist}"
            version = "1.0.0"
            dependencies = ["relaykit"]

            [project.entry-points.relaykit]
            {module} = "{module}"

            [tool.hatch.build.targets.wheel]
            packages = ["src/{module}"]
            """
        )
    )
    (project / "src" / module / "__init__.py").write_text(source)
    return project


@pytest.fixture
def site(tmp_path: Path) -> Path:
    target = tmp_path / "site"
    target.mkdir()
    return target


def test_an_installed_distribution_joins_the_catalog(tmp_path: Path, site: Path) -> None:
    project = make_distribution(
        tmp_path,
        "relaykit-acme",
        "relaykit_acme",
        PLUGIN_SOURCE.format(provider="acme", display="Acme SMS"),
    )
    pip_install_into(project, site)
    env = cli_env(tmp_path / "home", {"PYTHONPATH": str(site)})
    catalog = json.loads(run_cli(["providers", "--check", "--json"], env).stdout)
    by_name = {p["name"]: p for p in catalog["providers"]}
    assert sorted(by_name) == ["acme", "plivo", "stripe", "twilio"]
    assert by_name["acme"]["distribution"] == "relaykit-acme"
    assert by_name["acme"]["credential_schema"] == {
        "api_key": {"type": "string", "sensitive": True, "required": True},
        "sender": {"type": "string", "sensitive": False, "required": False},
    }


def test_a_distribution_that_fails_to_import_is_skipped_and_reported(
    tmp_path: Path, site: Path
) -> None:
    good = make_distribution(
        tmp_path,
        "relaykit-acme",
        "relaykit_acme",
        PLUGIN_SOURCE.format(provider="acme", display="Acme"),
    )
    broken = make_distribution(
        tmp_path,
        "relaykit-broken",
        "relaykit_broken",
        "import relaykit_missing_dependency  # the plugin's own bug\n",
    )
    pip_install_into(good, site)
    pip_install_into(broken, site)
    env = cli_env(tmp_path / "home", {"PYTHONPATH": str(site)})

    listing = run_cli(["providers"], env)  # without --check: lists, exits 0
    assert [line.split()[0] for line in listing.stdout.splitlines()] == [
        "acme",
        "plivo",
        "stripe",
        "twilio",
    ]
    assert "skipping plugin relaykit_broken from relaykit-broken" in listing.stderr

    check = run_cli(["providers", "--check"], env, check=False)
    assert check.returncode == 1
    assert (
        "error: relaykit-broken (relaykit_broken): failed to load: "
        "ModuleNotFoundError: No module named 'relaykit_missing_dependency'"
    ) in check.stderr


def test_two_distributions_claiming_one_name_stop_the_start(tmp_path: Path, site: Path) -> None:
    clash = make_distribution(
        tmp_path,
        "stripe-fork",
        "stripe_fork",
        PLUGIN_SOURCE.format(provider="stripe", display="Stripe fork"),
    )
    pip_install_into(clash, site)
    env = cli_env(tmp_path / "home", {"PYTHONPATH": str(site)})
    listing = run_cli(["providers"], env, check=False)
    assert listing.returncode == 1
    assert "declared by two distributions: relaykit-stripe and stripe-fork" in listing.stderr

    serve = subprocess.run(
        [sys.executable, "-m", "relaykit", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode != 0
    assert "relaykit-stripe and stripe-fork" in serve.stdout + serve.stderr
