"""The redaction step and the server's own loggers work together."""

from __future__ import annotations

import logging

import pytest
import uvicorn.logging

from relaykit import redaction

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
