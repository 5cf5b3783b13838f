"""`relaykit new-provider`: the package it writes installs into a fresh environment, passes
its own tests, and joins the catalog; and the contract kit catches each way of breaking it,
with a message that says what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .conftest import REPO, cli_env, pip_install_into, run_cli

pytestmark = pytest.mark.slow


def scaffold(tmp_path: Path, name: str = "acme_sms") -> Path:
    out = run_cli(["new-provider", name, "--directory", str(tmp_path)], cli_env(tmp_path / "home"))
    target = Path(out.stdout.strip().splitlines()[-1])
    assert target == tmp_path / f"relaykit-{name.replace('_', '-')}"
    return target


def test_the_scaffold_passes_its_own_tests_in_a_fresh_environment(tmp_path: Path) -> None:
    package = scaffold(tmp_path)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"{REPO / 'core'}[testing]",
            f"{package}[test]",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYKIT_", "PYTHON"))}
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "failed" not in tests.stdout
    listed = subprocess.run(
        [str(env_dir / "bin" / "relaykit"), "providers", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "RELAYKIT_HOME": str(tmp_path / "h")},
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:2] == ["acme_sms", "communication"]
    assert "relaykit-acme-sms" in listed.stdout


BREAKS = {
    "no entry point": (
        "pyproject.toml",
        'acme_sms = "relaykit_acme_sms"',
        'other = "relaykit_acme_sms"',
        "No entry point 'acme_sms' in the 'relaykit' group",
    ),
    "a name that is not a slug": (
        "src/relaykit_acme_sms/__init__.py",
        'name="acme_sms"',
        'name="Acme SMS"',
        "name 'Acme SMS' is not a slug",
    ),
    "a secret not marked sensitive": (
        "src/relaykit_acme_sms/__init__.py",
        'CredentialField(sensitive=True, description="Acme Sms API key")',
        'CredentialField(description="Acme Sms API key")',
        "The credential field 'api_key' looks secret but is not sensitive",
    ),
    "a capability without a handler": (
        "src/relaykit_acme_sms/__init__.py",
        "operations={capabilities.SEND_SMS: send_sms},",
        "",
        "capability 'send_sms' has no operation handler",
    ),
    "a handler that ignores the core's contract": (
        "src/relaykit_acme_sms/__init__.py",
        "    return OperationResult.succeeded(\n        MessageResult(",
        "    return OperationResult.succeeded(\n        dict(",
        "It must return OperationResult.succeeded(MessageResult(...))",
    ),
    "a verifier that raises": (
        "src/relaykit_acme_sms/__init__.py",
        "    classified = classify_response(\n",
        "    if response.status_code == 401:\n        raise RuntimeError('no')\n"
        "    classified = classify_response(\n",
        "The verifier raised RuntimeError on an HTTP 401 answer",
    ),
    "a credential in a log line": (
        "src/relaykit_acme_sms/__init__.py",
        "    response = await ctx.http.get(",
        "    import logging\n    logging.getLogger('acme').warning('key %s', credentials['api_key'])\n"
        "    response = await ctx.http.get(",
        "A credential value reached a log line (acme)",
    ),
}


@pytest.mark.parametrize("kind", list(BREAKS))
def test_the_kit_catches_each_break_and_says_what_to_fix(tmp_path: Path, kind: str) -> None:
    package = scaffold(tmp_path)
    relative, old, new, expected = BREAKS[kind]
    source = package / relative
    text = source.read_text()
    assert old in text, f"the scaffold changed: {old!r} is gone"
    source.write_text(text.replace(old, new))
    site = tmp_path / "site"
    pip_install_into(package, site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYKIT_")}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 1, result.stdout
    assert expected in result.stdout, result.stdout[-3000:]
