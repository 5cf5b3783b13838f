"""The one redaction step every log record passes through, and ``redact`` for messages."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from relaykit import redact, redaction
from relaykit.keys.local import LocalKeyring
from relaykit.sealing import SealContext, seal_credentials
from relaykit.testing import run_verification

from .providers_for_tests import make_provider

CANARY = "canary-6f1d2e3c4b5a"


@pytest.fixture(autouse=True)
def installed() -> None:
    redaction.install()


def test_registered_values_never_reach_a_record(caplog: pytest.LogCaptureFixture) -> None:
    redaction.register_secrets([CANARY, "short"])
    caplog.set_level(logging.DEBUG)
    logging.getLogger("anything.at.all").debug("calling with %s and %r", CANARY, {"k": CANARY})
    assert CANARY not in caplog.text
    assert caplog.text.count("[redacted]") == 2
    assert redaction.redact_text("short") == "short"  # too short to register


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        ("secret_key=sk_live_abc123 next", "sk_live_abc123"),
        ('{"auth_token": "tok-98765", "to": "+1555"}', "tok-98765"),
        ("auth_token: 'xyz-secret'", "xyz-secret"),
        ("Authorization: Bearer rk_abc_def", "rk_abc_def"),
        ("headers={'authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
        ("password=hunter22&user=bob", "hunter22"),
    ],
)
def test_secrets_by_field_name(line: str, hidden: str) -> None:
    redacted = redaction.redact_text(line)
    assert hidden not in redacted and "[redacted]" in redacted


def test_exception_chains_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    redaction.register_secrets([CANARY])
    caplog.set_level(logging.DEBUG)
    try:
        try:
            raise KeyError(f"lookup of {CANARY}")
        except KeyError as inner:
            raise ValueError(f"could not use {CANARY}") from inner
    except ValueError:
        logging.getLogger("relaykit.test").exception("failed")
    [record] = [r for r in caplog.records if r.name == "relaykit.test"]
    assert record.exc_info is None and record.exc_text
    assert "KeyError" in record.exc_text and "ValueError" in record.exc_text  # the whole chain
    assert CANARY not in record.exc_text and CANARY not in caplog.text


def test_a_verifier_exception_carrying_the_credentials_is_logged_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def leaky(credentials: object, ctx: object) -> object:
        secret = credentials["api_key"]  # type: ignore[index]
        try:
            raise httpx.HTTPError(f"401 for key {secret}")
        except httpx.HTTPError as exc:
            raise RuntimeError(f"verifier gave up on {credentials}") from exc

    secret = "ak_canary_0d0e0a0d0b0e0e0f"
    redaction.register_secrets([secret])  # what opening the sealed credentials does
    result = run_verification(make_provider(verify=leaky), {"api_key": secret, "account": "a"})
    assert "RuntimeError" in result.message
    assert "the acme verifier raised" in caplog.text  # the traceback was logged
    assert "HTTPError" in caplog.text
    assert secret not in caplog.text


def test_sealed_values_are_covered_from_the_first_line(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Sealing registers the values: a fresh process's first log line is already covered."""
    caplog.set_level(logging.DEBUG)
    value = "sk_canary_sealed_only_5555"
    keyring = LocalKeyring.in_home(tmp_path)
    seal_credentials({"secret_key": value}, SealContext("t", "i", "p"), keyring)
    logging.getLogger("relaykit.test").warning("request body was %s", {"secret_key": value})
    assert value not in caplog.text


def test_redact_masks_every_value_longest_first() -> None:
    secrets = {"a": "abcd1234", "b": "abcd", "short": "x", "none": None}
    assert redact("k=abcd1234 and abcd and x", secrets) == "k=[redacted] and [redacted] and x"
    assert redact("k=abcd1234 and abcd", ["abcd", "abcd1234"]) == "k=[redacted] and [redacted]"
    # One string is one value, not its characters.
    assert redact("k=abcd1234", "abcd1234") == "k=[redacted]"
