"""Log setup for every relaykit process: text or JSON lines (``RELAYKIT_LOG_FORMAT``), each
carrying the request id, tenant and integration of the code that logged it.

* ``text``: ``TIME LEVEL LOGGER: MESSAGE``, followed by `` [request_id=… tenant_id=…
  integration_id=…]`` when any is known;
* ``json``: one JSON object per line: ``time`` (UTC, ISO 8601, milliseconds), ``level``,
  ``logger``, ``message``, then ``request_id``, ``tenant_id``, ``integration_id`` when set,
  the access line's ``method``, ``route``, ``status``, ``duration_ms`` on it, and ``exc_info``
  (the traceback as one string) when there is one.

The context comes from :mod:`relaykit.context`, read when the record is made (:func:`install`
adds it to the record factory). Redaction is not
done here: :func:`relaykit.redaction.install` redacts every record once when it is made,
message, arguments and traceback, so both formats print the same redacted text.

The standard library, not structlog: every logger in the process (uvicorn's, httpx's,
plugins') goes through the stdlib anyway, and the redaction step already lives at its
record factory; a formatter is all a JSON line needs.

:func:`setup` configures a command's process (``relaykit worker`` and the rest of the CLI);
``relaykit serve`` hands :func:`config` to uvicorn as its ``log_config``, so uvicorn applies
it in each of its processes.
"""

from __future__ import annotations

import datetime as dt
import logging
import logging.config
import threading
from typing import Any

import msgspec

from relaykit import redaction
from relaykit.context import INTEGRATION_ID, REQUEST_ID, TENANT_ID

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The fields the access line (relaykit.access) adds as ``extra``, shown in JSON lines.
ACCESS_FIELDS = ("method", "route", "status", "duration_ms")
#: The logger of the server's one line per request.
ACCESS_LOGGER = "relaykit.access"

_encoder = msgspec.json.Encoder()


def _context_record(factory: Any, *args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = factory(*args, **kwargs)
    record.request_id = REQUEST_ID.get()
    record.tenant_id = TENANT_ID.get()
    record.integration_id = INTEGRATION_ID.get()
    return record


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """The redaction step (:func:`relaykit.redaction.install`), and the request's ids put on
    every record when it is made (``record.request_id``, ``tenant_id``,
    ``integration_id``), so a record handled later or elsewhere keeps them. Idempotent."""
    global _installed
    redaction.install()
    with _install_lock:
        if _installed:
            return
        factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(lambda *a, **k: _context_record(factory, *a, **k))
        _installed = True


def _context(record: logging.LogRecord) -> tuple[str | None, str | None, str | None]:
    if hasattr(record, "request_id"):
        return (
            record.request_id,
            getattr(record, "tenant_id", None),
            getattr(record, "integration_id", None),
        )
    return REQUEST_ID.get(), TENANT_ID.get(), INTEGRATION_ID.get()


class TextFormatter(logging.Formatter):
    """The text format, with the request's ids appended when known."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt or TEXT_FORMAT, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id, tenant_id, integration_id = _context(record)
        if request_id is None and tenant_id is None and integration_id is None:
            return line
        parts = []
        if request_id is not None:
            parts.append(f"request_id={request_id}")
        if tenant_id is not None:
            parts.append(f"tenant_id={tenant_id}")
        if integration_id is not None:
            parts.append(f"integration_id={integration_id}")
        # after the message's first line, so a traceback below it stays readable
        head, newline, rest = line.partition("\n")
        return f"{head} [{' '.join(parts)}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (a traceback is one string field, never several lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id, tenant_id, integration_id = _context(record)
        if request_id is not None:
            entry["request_id"] = request_id
        if tenant_id is not None:
            entry["tenant_id"] = tenant_id
        if integration_id is not None:
            entry["integration_id"] = integration_id
        if record.name == ACCESS_LOGGER:
            for name in ACCESS_FIELDS:
                value = getattr(record, name, None)
                if value is not None:
                    entry[name] = value
        exc_text = record.exc_text
        if not exc_text and record.exc_info:  # a record made before redaction was installed
            exc_text = redaction.redact_text(self.formatException(record.exc_info))
        if exc_text:
            entry["exc_info"] = exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return _encoder.encode(entry).decode()


def formatter_class(log_format: str) -> type[logging.Formatter]:
    return JsonFormatter if log_format == "json" else TextFormatter


def config(level: str, log_format: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for ``level`` and ``log_format``: one handler on
    the root (stderr) with relaykit's formatter, uvicorn's loggers propagating to it (its
    access log is left to the caller: ``relaykit serve`` turns it off in favour of
    relaykit's own access line, which carries the request id), alembic at WARNING unless
    DEBUG. Existing loggers stay enabled."""
    quiet = "WARNING" if level != "DEBUG" else level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"relaykit": {"()": formatter_class(log_format)}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "relaykit",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            # Alembic narrates every plugin it sets up at INFO on each start.
            "alembic": {"level": quiet},
        },
    }


def setup(level: str, log_format: str) -> None:
    """:func:`install`, and configure the process's logging (stderr)."""
    install()
    logging.config.dictConfig(config(level, log_format))
