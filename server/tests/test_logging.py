"""The redaction step and the server's own loggers work together; relaykit.logs' two formats
carry the request's context and print only redacted text."""

from __future__ import annotations

import io
import json
import logging

import pytest
import uvicorn.logging
from litestar import get

from relaykit import context, logs, redaction

from .conftest import Api

CANARY = "canary-7a6b5c4d3e2f"


@pytest.fixture(autouse=True)
def installed() -> None:
    redaction.install()


def test_argument_shapes_survive_for_formatters_that_read_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """uvicorn's access formatter unpacks record.args itself: they must stay a tuple."""
    redaction.register_secrets([CANARY])
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("uvicorn.access.test")
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/x?k={CANARY}", "1.1", 200)
    [record] = [r for r in caplog.records if r.name == "uvicorn.access.test"]
    assert isinstance(record.args, tuple) and len(record.args) == 5
    assert record.args[4] == 200
    line = uvicorn.logging.AccessFormatter(
        '%(client_addr)s "%(request_line)s" %(status_code)s'
    ).format(record)
    assert "GET /x?k=[redacted] HTTP/1.1" in line and CANARY not in line


# -- relaykit.logs: the two formats, the request's context, one redaction step ---------------


def _capture(log_format: str) -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter_class(log_format)())
    return handler, stream


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_line_carries_the_context_and_no_secret(log_format: str) -> None:
    logs.install()
    redaction.register_secrets([CANARY])
    handler, stream = _capture(log_format)
    logger = logging.getLogger("relaykit.test.format")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with context.bound(request_id="req-7", tenant_id="t-1", integration_id="i-2"):
            logger.info("sending with %s", CANARY)
            try:
                raise RuntimeError(f"provider said no to {CANARY}")
            except RuntimeError:
                logger.exception("it failed, auth_token=%s", "visible-only-by-name")
        logger.info("outside any request")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert CANARY not in text and "visible-only-by-name" not in text
    if log_format == "text":
        first, *rest = text.splitlines()
        assert first.endswith(
            "sending with [redacted] [request_id=req-7 tenant_id=t-1 integration_id=i-2]"
        )
        assert "RuntimeError: provider said no to [redacted]" in text
        assert rest[-1].endswith("relaykit.test.format: outside any request")
        return
    entries = [json.loads(line) for line in text.splitlines()]  # one object per line
    assert len(entries) == 3
    sent, failed, outside = entries
    assert sent["message"] == "sending with [redacted]"
    assert (sent["request_id"], sent["tenant_id"], sent["integration_id"]) == (
        "req-7",
        "t-1",
        "i-2",
    )
    assert sent["level"] == "INFO" and sent["logger"] == "relaykit.test.format"
    assert sent["time"].endswith("+00:00")
    assert failed["level"] == "ERROR" and failed["message"] == "it failed, auth_token=[redacted]"
    assert "RuntimeError: provider said no to [redacted]" in failed["exc_info"]
    assert "Traceback" in failed["exc_info"]
    assert "request_id" not in outside and "exc_info" not in outside


@get("/test/leaky", include_in_schema=False)
async def leaky() -> None:
    raise RuntimeError(f"a bug holding {SEALED_CANARY}")


SEALED_CANARY = "tok-ok-sealed-canary-4e7d21"


@pytest.mark.anyio
@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_an_unexpected_exception_of_the_real_app_is_logged_redacted(
    api: Api, log_format: str
) -> None:
    """A credential the app sealed (so registered) shows in no line, the traceback of an
    unexpected exception that carries it included; the line has its request's id."""
    from .test_routing_api import messaging

    _, headers = api.tenant_token("acme")
    await messaging(api, headers, "textly", SEALED_CANARY)
    api.client.app.register(leaky)
    handler, stream = _capture(log_format)
    root, access = logging.getLogger(), logging.getLogger(logs.ACCESS_LOGGER)
    root.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        response = await api.client.get("/test/leaky", headers={"X-Request-ID": "boom-1"})
    finally:
        root.removeHandler(handler)
        access.setLevel(logging.NOTSET)
    assert response.status_code == 500
    assert SEALED_CANARY not in response.text
    text = stream.getvalue()
    assert SEALED_CANARY not in text
    assert "a bug holding [redacted]" in text
    if log_format == "json":
        entries = [json.loads(line) for line in text.splitlines()]
        (error,) = [e for e in entries if e.get("exc_info")]
        assert error["request_id"] == "boom-1"
        (access,) = [e for e in entries if e["logger"] == "relaykit.access"]
        assert (access["status"], access["route"], access["request_id"]) == (
            500,
            "/test/leaky",
            "boom-1",
        )
    else:
        assert "[request_id=boom-1]" in text
