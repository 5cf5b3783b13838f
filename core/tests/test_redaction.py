"""The one redaction step every log record passes through, and ``redact`` for messages."""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaykit import redact, redaction
from relaykit.keys import KeySet, LocalKeyring
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
    keys = KeySet.single(LocalKeyring.create(tmp_path / "keyring.json"))
    seal_credentials({"secret_key": value}, SealContext("t", "i", "p"), keys)
    logging.getLogger("relaykit.test").warning("request body was %s", {"secret_key": value})
    assert value not in caplog.text


def test_redact_masks_every_value_longest_first() -> None:
    secrets = {"a": "abcd1234", "b": "abcd", "short": "x", "none": None}
    assert redact("k=abcd1234 and abcd and x", secrets) == "k=[redacted] and [redacted] and x"
    assert redact("k=abcd1234 and abcd", ["abcd", "abcd1234"]) == "k=[redacted] and [redacted]"
    # One string is one value, not its characters.
    assert redact("k=abcd1234", "abcd1234") == "k=[redacted]"


# -- by value: found anywhere in the text, never forgotten while live -------------------------


def _new_secret(prefix: str = "sk_test_") -> str:
    return prefix + secrets.token_urlsafe(18)


def _logged(caplog: pytest.LogCaptureFixture, name: str) -> str:
    """Everything the logger ``name`` wrote, as caplog's handler formatted it (tracebacks in)."""
    return "\n".join(
        caplog.handler.format(record) for record in caplog.records if record.name == name
    )


@pytest.mark.parametrize(
    "log",
    [
        pytest.param(lambda logger, s: logger.error(f"bad key {s}."), id="f-string-period"),
        pytest.param(lambda logger, s: logger.info("GET /v1/%s/foo", s), id="url-path"),
        pytest.param(
            lambda logger, s: logger.warning("Invalid API Key provided: %s.", s),
            id="provider-message",
        ),
        pytest.param(lambda logger, s: logger.info("body %s", json.dumps({"k": s})), id="json"),
        pytest.param(
            lambda logger, s: logger.info("calling https://api.example.com/x?key=%s&n=1#f", s),
            id="query-string",
        ),
        pytest.param(
            lambda logger, s: logger.info(f"quoted '{s}' \"{s}\" [{s}] ({s}) {{{s}}} <{s}>"),
            id="quotes-brackets",
        ),
        pytest.param(lambda logger, s: logger.info("glued %s", "xx" + s + "yy"), id="glued"),
        pytest.param(lambda logger, s: logger.info("%r", [s, (s,), {s: s}]), id="repr"),
    ],
)
def test_a_registered_value_is_masked_wherever_it_appears(
    caplog: pytest.LogCaptureFixture, log: Any
) -> None:
    secret = _new_secret()
    redaction.register_secrets([secret])
    caplog.set_level(logging.DEBUG)
    log(logging.getLogger("relaykit.test.anywhere"), secret)
    text = _logged(caplog, "relaykit.test.anywhere")
    assert text and secret not in text
    assert "[redacted]" in text


def test_the_leaking_shapes_read_as_expected(caplog: pytest.LogCaptureFixture) -> None:
    """Token-like values glued to ``.``, ``/`` or letters, in the message or in an argument."""
    token_like, punctuated = _new_secret(), _new_secret("sk_live_") + "!"
    redaction.register_secrets([token_like, punctuated])
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("relaykit.test.shapes")
    for secret in (token_like, punctuated):
        logger.error(f"bad key {secret}.")
        logger.info(f"GET /v1/{secret}/foo")
        logger.info("GET /v1/%s/foo", secret)
        logger.warning(f"Invalid API Key provided: {secret}.")
        logger.warning("Invalid API Key provided: %s.", secret)
        logger.info("glued %s", "xx" + secret + "yy")
    expected = [
        "bad key [redacted].",
        "GET /v1/[redacted]/foo",
        "GET /v1/[redacted]/foo",
        "Invalid API Key provided: [redacted].",
        "Invalid API Key provided: [redacted].",
        "glued xx[redacted]yy",
    ]
    messages = [r.getMessage() for r in caplog.records if r.name == "relaykit.test.shapes"]
    assert messages == expected * 2


def test_a_value_in_a_traceback_and_its_cause_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    secret, cause_secret = _new_secret(), _new_secret()
    redaction.register_secrets([secret, cause_secret])
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("relaykit.test.traceback")
    try:
        try:
            raise KeyError(f"no account for key({cause_secret})")
        except KeyError as cause:
            raise RuntimeError(f"Invalid API Key provided: {secret}.") from cause
    except RuntimeError:
        logger.exception("the call failed")
    text = _logged(caplog, "relaykit.test.traceback")
    assert "KeyError" in text and "RuntimeError" in text and "direct cause" in text
    assert secret not in text and cause_secret not in text
    assert "Invalid API Key provided: [redacted]." in text
    assert "no account for key([redacted])" in text


def test_twenty_thousand_secrets_are_all_masked(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing is forgotten: the first value registered is masked as surely as the last."""
    values = [
        "sk_live_" + secrets.token_urlsafe(18) + "!" if i % 7 == 0 else secrets.token_urlsafe(24)
        for i in range(20_000)
    ]
    logger = logging.getLogger("relaykit.test.many")
    caplog.set_level(logging.DEBUG)
    try:
        # As relaykit does it: values arrive a few at a time (each seal or open), with log
        # lines in between, so the registry grows while it is in use.
        for start in range(0, len(values), 250):
            redaction.register_secrets(values[start : start + 250])
            logger.debug("registered up to %d", start)
        middle = values[random.randrange(1, len(values) - 1)]
        first, last = values[0], values[-1]
        logger.error(f"keys {first}, GET /v1/{middle}/x and 'Invalid key: {last}.'")
        logger.info("all: %s", " ".join(values))
        [line, everything] = [
            r.getMessage() for r in caplog.records if r.name == "relaykit.test.many"
        ][-2:]
        assert line == "keys [redacted], GET /v1/[redacted]/x and 'Invalid key: [redacted].'"
        assert everything == "all: " + " ".join(["[redacted]"] * len(values))
        assert not any(value in caplog.text for value in (first, middle, last))
    finally:
        redaction.forget_secrets(values)
    assert redaction.redact_text(first) == first  # forgotten, for the other tests' sake


def test_overlapping_values_leave_no_fragment(caplog: pytest.LogCaptureFixture) -> None:
    inner = "inner" + secrets.token_hex(6)
    outer = "outer-" + inner + "-outer" + secrets.token_hex(3)  # contains inner
    left = "left" + secrets.token_hex(8)
    right = left[-8:] + "right" + secrets.token_hex(4)  # overlaps left's last 8 characters
    adjacent = "adj" + secrets.token_hex(5)
    redaction.register_secrets([inner, outer, left, right, adjacent])
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("relaykit.test.overlap")
    logger.info("a %s b", outer)
    logger.info("a %s b", inner)
    logger.info("a %s b", left[:-8] + right)  # left and right, overlapping
    logger.info("a %s b", "x" + left + adjacent + "y")  # touching: one masked run
    logger.info("a %s b %s c", right + "." + outer, left)
    assert [r.getMessage() for r in caplog.records if r.name == "relaykit.test.overlap"] == [
        "a [redacted] b",
        "a [redacted] b",
        "a [redacted] b",
        "a x[redacted]y b",
        "a [redacted].[redacted] b [redacted] c",
    ]


def test_forget_secrets_unmasks_that_value_only(caplog: pytest.LogCaptureFixture) -> None:
    kept, erased = _new_secret(), _new_secret()
    inside = erased[3:15]  # a value inside the erased one, still live
    redaction.register_secrets([kept, erased, inside])
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("relaykit.test.forget")
    logger.info("before %s %s", kept, erased)
    redaction.forget_secrets([erased, "never-registered-value", None])
    logger.info("after %s %s", kept, erased)
    redaction.register_secrets([erased])  # in use again
    logger.info("again %s", erased)
    expected_erased = erased[:3] + "[redacted]" + erased[15:]
    assert [r.getMessage() for r in caplog.records if r.name == "relaykit.test.forget"] == [
        "before [redacted] [redacted]",
        f"after [redacted] {expected_erased}",
        "again [redacted]",
    ]
    redaction.forget_secrets(erased)  # one string is one value
    assert redaction.redact_text(erased) == expected_erased


def test_a_value_shorter_than_the_minimum_is_not_masked(caplog: pytest.LogCaptureFixture) -> None:
    short = secrets.token_hex(8)[: redaction.MIN_SECRET_LENGTH - 1]
    long_enough = secrets.token_hex(8)[: redaction.MIN_SECRET_LENGTH]
    redaction.register_secrets([short, long_enough])
    caplog.set_level(logging.DEBUG)
    logging.getLogger("relaykit.test.short").info("values %s and %s", short, long_enough)
    [record] = [r for r in caplog.records if r.name == "relaykit.test.short"]
    assert record.getMessage() == f"values {short} and [redacted]"


def test_values_registered_from_many_threads_are_masked_at_once() -> None:
    """Each thread's value is masked in its very next line, while others register and merge."""
    leaks: list[str] = []

    def work() -> None:
        for _ in range(300):
            value = _new_secret()
            redaction.register_secrets([value])
            if redaction.redact_text(f"x{value}y") != "x[redacted]y":
                leaks.append(value)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert leaks == []


def test_a_secret_as_a_mapping_key_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    """logging hands a lone mapping argument over as the record's args: its keys print too."""
    redaction.install()
    caplog.set_level(logging.INFO)
    secret = "sk_live_mapping_key_" + secrets.token_hex(12)
    redaction.register_secrets([secret])
    logging.getLogger("relaykit.test").info("seen %s", {secret: 1})
    logging.getLogger("relaykit.test").info("seen %s", {b"bytes-key": secret})
    assert secret not in caplog.text
    assert caplog.text.count(redaction.REDACTED) == 2
