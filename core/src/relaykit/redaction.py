"""Redaction: one step that every log record passes through, and :func:`redact` for messages.

:func:`install` wraps the logging module's record factory, so every record made by any
logger in the process (relaykit's, uvicorn's, a plugin's, httpx's) is redacted once, when it
is made, before any handler or formatter sees it:

* by value: every secret relaykit has sealed or unsealed in this process is registered
  (:func:`register_secrets`) and replaced wherever it appears;
* by name: ``secret_key=…``, ``"auth_token": "…"``, ``Authorization: Bearer …`` and the like;
* exceptions: the traceback, with every chained cause and context, is formatted and
  redacted on the spot, and the exception object is dropped from the record, so no later
  formatter can print an unredacted copy. Tracebacks carry no local variables (the standard
  formatter prints none, and relaykit configures no other).

:func:`redact` masks given credential values in one message: the core applies it to every
verifier's and handler's result, and the classify helpers to the provider's message.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
#: Values shorter than this are not registered: masking "1" everywhere protects nothing.
MIN_SECRET_LENGTH = 6
MAX_REGISTERED = 10_000

_SENSITIVE_NAMES = (
    r"secret(?:_key)?|webhook_secret|auth_token|api_key|access_token|refresh_token|password"
    r"|passwd|client_secret|private_key|token"
)
_BY_NAME = re.compile(
    rf"""(?ix)
    (?P<name>["']?\b(?:{_SENSITIVE_NAMES})\b["']?\s*[:=]\s*)
    (?P<value>"[^"]*"|'[^']*'|[^\s,;&}}\]]+)
    """
)
_AUTHORIZATION = re.compile(
    r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic)\s+)?[^\s\"',}]+"
)


_TOKEN = re.compile(r"[A-Za-z0-9_\-./+]+")


class _Registry:
    """The secret values in use, bounded, searchable in time linear in the text.

    Token-like values (letters, digits, ``_-./+``: nearly every API key and token) are found
    by splitting the text into such tokens and looking each up in a set, so the cost of a
    log line does not grow with the number of secrets (a regex alternation of thousands of
    values would have to be recompiled at every new secret). Other values are searched for
    one by one.
    """

    def __init__(self) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._tokens: set[str] = set()
        self._others: set[str] = set()
        self._lock = threading.Lock()

    def add(self, values: Iterable[Any]) -> None:
        with self._lock:
            for value in values:
                if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
                    continue
                if value in self._values:
                    self._values.move_to_end(value)
                    continue
                self._values[value] = None
                (self._tokens if _TOKEN.fullmatch(value) else self._others).add(value)
            while len(self._values) > MAX_REGISTERED:
                old, _ = self._values.popitem(last=False)
                self._tokens.discard(old)
                self._others.discard(old)

    def redact(self, text: str) -> str:
        if self._tokens:
            tokens = self._tokens
            text = _TOKEN.sub(lambda m: REDACTED if m.group(0) in tokens else m.group(0), text)
        for value in tuple(self._others):
            if value in text:
                text = text.replace(value, REDACTED)
        return text


_registry = _Registry()


def redact(message: str, secrets: Mapping[str, Any] | Iterable[Any]) -> str:
    """``message`` with every credential value in ``secrets`` replaced by :data:`REDACTED`.

    Args:
        message: a message meant for the tenant or the operator.
        secrets: the values to mask: a mapping (its values are masked), an iterable of
            values, or one string.

    Returns:
        ``message`` with each value masked, the longest first so that a value containing
        another is masked whole. Values shorter than four characters are left alone:
        masking "1" everywhere would mangle messages while protecting nothing.
    """
    if isinstance(secrets, str):
        # One credential value, not its characters.
        values: Iterable[Any] = (secrets,)
    elif isinstance(secrets, Mapping):
        values = secrets.values()
    else:
        values = secrets
    for value in sorted((str(v) for v in values if v is not None), key=len, reverse=True):
        if len(value) >= 4:
            message = message.replace(value, REDACTED)
    return message


def register_secrets(values: Iterable[Any]) -> None:
    """Remember secret values in use in this process, so no log line can carry them."""
    _registry.add(values)


def redact_text(text: str) -> str:
    text = _registry.redact(text)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    return _BY_NAME.sub(lambda m: m.group("name") + REDACTED, text)


def _redacted_value(value: Any) -> Any:
    """``value`` if it carries no secret, else its text, redacted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    redacted = redact_text(text)
    return value if redacted == text else redacted


def _redacted_record(factory: Any, *args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = factory(*args, **kwargs)
    # The message and each argument are redacted in place, keeping the arguments' shape:
    # some formatters (uvicorn's access log) read record.args themselves.
    message = _redacted_value(record.msg)
    if record.args and message is not record.msg:
        # The template itself names a secret ("auth_token=%s"): its placeholder would be
        # masked and the arguments no longer fit, so the line is formatted whole, then
        # redacted (the value after the name is what must go).
        try:
            whole = record.getMessage()
        except Exception:  # a template that does not fit its arguments: keep the template
            whole = str(record.msg)
        record.msg = redact_text(whole)
        record.args = ()
    else:
        record.msg = message
    if isinstance(record.args, tuple):
        record.args = tuple(_redacted_value(arg) for arg in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {key: _redacted_value(arg) for key, arg in record.args.items()}
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info))
        record.exc_text = redact_text(text.rstrip("\n"))
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Route every log record of this process through the redaction step (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(lambda *a, **k: _redacted_record(factory, *a, **k))
        _installed = True
