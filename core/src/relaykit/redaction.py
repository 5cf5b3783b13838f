"""Redaction: one step that every log record passes through, and :func:`redact` for messages.

:func:`install` wraps the logging module's record factory, so every record made by any
logger in the process (relaykit's, uvicorn's, a plugin's, httpx's) is redacted once, when it
is made, before any handler or formatter sees it:

* by value: every secret relaykit has sealed or unsealed in this process is registered
  (:func:`register_secrets`) and replaced wherever it appears, even inside a longer word
  (a substring match), until :func:`forget_secrets`;
* by name: ``secret_key=…``, ``"auth_token": "…"``, ``Authorization: Bearer …`` and the like;
* exceptions: the traceback, with every chained cause and context, is formatted and
  redacted on the spot, and the exception object is dropped from the record, so no later
  formatter can print an unredacted copy. Tracebacks carry no local variables (the standard
  formatter prints none, and relaykit configures no other).

:func:`redact` masks given credential values in one message: the core applies it to every
verifier's and handler's result, and the classify helpers to the provider's message.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

# A C extension without stubs or inline types: mypy finds no module to read.
import ahocorasick  # type: ignore[import-not-found]

REDACTED = "[redacted]"
#: Values shorter than this are not registered: masking "1" everywhere protects nothing.
MIN_SECRET_LENGTH = 6

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


#: The most values one automaton holds. Building one holds the GIL throughout (about 0.1 s
#: for 8k values of 32 characters, 0.4 s for 32k): bigger automata would stall every thread
#: of the process (the event loop included) for longer; smaller ones would be more automata
#: to scan each text with. At 8k, a 200-character line with 40k values registered one by one
#: takes about 8 us (8 automata), as long as the token lookup this replaced.
_MAX_LEVEL_WORDS = 8_192


class _Level:
    """One immutable Aho-Corasick automaton over some of the registered values."""

    __slots__ = ("automaton", "words")

    def __init__(self, automaton: Any, words: tuple[str, ...]) -> None:
        self.automaton = automaton
        self.words = words


#: New values are searched one by one (``str.find``) until this many are pending, then built
#: into an automaton together: a create registers one or two, and an automaton built (and
#: merged) per value cost twice as much as a few finds (measured: ~110 us against ~220 us
#: a create, two values and three log lines, 40,000 values registered that way).
_PENDING_SCAN = 16


def _build_levels(words: Iterable[str]) -> list[_Level]:
    """Automata finding each of ``words`` (each word is its own payload), at most
    :data:`_MAX_LEVEL_WORDS` words in each."""
    levels = []
    automaton, kept = ahocorasick.Automaton(), []
    for word in words:
        if not automaton.add_word(word, word):
            continue  # a duplicate
        kept.append(word)
        if len(kept) == _MAX_LEVEL_WORDS:
            automaton.make_automaton()
            levels.append(_Level(automaton, tuple(kept)))
            automaton, kept = ahocorasick.Automaton(), []
    if kept:
        automaton.make_automaton()
        levels.append(_Level(automaton, tuple(kept)))
    return levels


def _by_size(levels: Iterable[_Level]) -> tuple[_Level, ...]:
    return tuple(sorted(levels, key=lambda level: len(level.words), reverse=True))


class _Registry:
    """The secret values in use, each found anywhere in a text, in time linear in the text.

    The values are kept in Aho-Corasick automata (``pyahocorasick``), which find every
    occurrence of every value in one pass over the text, whatever the characters around it
    and however many values there are. Every value stays until :meth:`forget` (no count
    limit), so a value registered long ago is masked as surely as the last one.

    An automaton cannot take new words once built, and building one costs time linear in the
    words it holds. So registration is incremental, in the manner of a log-structured merge:

    * :meth:`add` of a known value is one set lookup; a new value is appended to a pending
      list, under a lock held for that append only;
    * :meth:`redact` searches pending values one by one (``str.find``) while fewer than
      :data:`_PENDING_SCAN`; past that it builds an automaton of them and publishes it (a
      new tuple of levels, swapped in whole: a thread already redacting keeps the tuple it
      read, which is complete for what was registered before it). Threads that redact
      meanwhile wait for it, since their text may carry those values: well under a
      millisecond for a batch, about 0.2 s for 20k at once. A value leaves the pending list
      only after the levels that hold it are published, so a text is always searched for
      every value registered before it;
    * levels are merged (rebuilt as one) when the smaller one grows past a quarter of the
      next larger, up to :data:`_MAX_LEVEL_WORDS` values: each value is rebuilt ``O(log n)``
      times over its life, instead of all values at every new one, and a text is scanned
      by at most about ``n / _MAX_LEVEL_WORDS + 9`` automata (8 for 40k values registered
      one by one). A new value costs about 50 us over its life in builds and merges (a
      create registers one or two), against a few microseconds for the token set before.

    Each value costs about 1.5 KB (a trie node per character): 30 MB for 20k values of 32
    characters, 150 MB for 100k.

    :meth:`forget` drops values at once from the live set (a match of a forgotten value is
    ignored); the automata are compacted once forgotten values are half of their words.
    """

    #: A level is merged into the next larger one while that one is less than this many
    #: times its size.
    _MERGE_RATIO = 4

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pending: list[str] = []
        self._levels: tuple[_Level, ...] = ()
        #: values forgotten since the last compaction (an upper bound of the dead words)
        self._forgotten = 0
        self._lock = threading.Lock()  # _values, _pending, _levels, _forgotten: writes
        self._build_lock = threading.Lock()  # one build of the pending values at a time
        self._merge_lock = threading.Lock()  # one merge or compaction at a time

    def add(self, values: Iterable[Any]) -> None:
        known = self._values
        new = [
            value
            for value in values
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH and value not in known
        ]
        if not new:
            return
        with self._lock:
            for value in new:
                if value not in self._values:
                    self._values.add(value)
                    self._pending.append(value)

    def forget(self, values: Iterable[Any]) -> None:
        with self._lock:
            for value in values:
                if isinstance(value, str) and value in self._values:
                    self._values.discard(value)
                    self._forgotten += 1
            forgotten = self._forgotten
            words = sum(len(level.words) for level in self._levels)
        if forgotten and forgotten * 2 > words:
            self._compact()

    def redact(self, text: str) -> str:
        # Pending values are published before they leave the pending list: a value is in
        # the list read here or in the levels read after it.
        pending: tuple[str, ...] = ()
        if self._pending:
            if len(self._pending) >= _PENDING_SCAN:
                self._flush()
            else:
                pending = tuple(self._pending)
        levels = self._levels
        if not (levels or pending) or len(text) < MIN_SECRET_LENGTH:
            return text
        live = self._values
        spans: list[tuple[int, int]] = []
        for level in levels:
            for end, value in level.automaton.iter(text):
                if value in live:
                    spans.append((end + 1 - len(value), end + 1))
        for value in pending:  # a few new values: C's substring search, one by one
            if value not in live:
                continue  # forgotten since
            at = text.find(value)
            while at >= 0:
                spans.append((at, at + len(value)))
                at = text.find(value, at + 1)
        if not spans:
            return text
        # Mask the union of the matched spans: each maximal run once, no fragment left.
        spans.sort()
        parts: list[str] = []
        done = 0
        start, stop = spans[0]
        for span_start, span_stop in spans[1:]:
            if span_start <= stop:
                stop = max(stop, span_stop)
                continue
            parts += (text[done:start], REDACTED)
            done = stop
            start, stop = span_start, span_stop
        parts += (text[done:start], REDACTED, text[stop:])
        return "".join(parts)

    def _flush(self) -> None:
        """Build and publish an automaton of the pending values, then merge levels."""
        with self._build_lock:
            with self._lock:
                batch = list(self._pending)
            if not batch:
                return  # another thread published them while this one waited
            live = self._values
            levels = _build_levels(value for value in batch if value in live)
            with self._lock:
                if levels:
                    self._levels = _by_size((*self._levels, *levels))
                # Only this lock's holder removes from the list; adds only append.
                del self._pending[: len(batch)]
        self._merge()

    def _merge(self) -> None:
        """Merge levels until each is full (:data:`_MAX_LEVEL_WORDS`) or at least
        ``_MERGE_RATIO`` times the next smaller one. A merge past the maximum makes a full
        level and a rest; a full level is not rebuilt again (but by :meth:`_compact`).

        Runs outside the build lock: a thread logging meanwhile uses the levels published so
        far (which hold every registered value) and waits for nothing.
        """
        if not self._merge_lock.acquire(blocking=False):
            return  # another thread is merging, and will look again when done
        try:
            while True:
                levels = self._levels
                pair = next(
                    (
                        (larger, smaller)
                        for larger, smaller in itertools.pairwise(levels)
                        if len(larger.words) < _MAX_LEVEL_WORDS
                        and len(larger.words) < self._MERGE_RATIO * len(smaller.words)
                    ),
                    None,
                )
                if pair is None:
                    return
                live = self._values
                merged = _build_levels(
                    word for level in pair for word in level.words if word in live
                )
                with self._lock:
                    rest = [level for level in self._levels if level not in pair]
                    self._levels = _by_size(rest + merged)
        finally:
            self._merge_lock.release()

    def _compact(self) -> None:
        """Rebuild all levels without the forgotten values."""
        with self._merge_lock:
            with self._lock:
                levels = self._levels
                forgotten = self._forgotten
            live = self._values
            rebuilt = _build_levels(
                word for level in levels for word in level.words if word in live
            )
            with self._lock:
                rest = [level for level in self._levels if level not in levels]
                self._levels = _by_size(rest + rebuilt)
                self._forgotten -= forgotten


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
    """Remember secret values in use in this process, so no log line can carry them.

    Each value (a string of at least :data:`MIN_SECRET_LENGTH` characters; one string is one
    value) is then masked wherever it appears in a log record, until :func:`forget_secrets`.
    Registering a value already known costs one set lookup.
    """
    _registry.add((values,) if isinstance(values, str) else values)


def forget_secrets(values: Iterable[Any]) -> None:
    """Stop masking values no longer in use (e.g. an integration's erased credentials).

    Takes effect at once, for these values only (one string is one value); a value
    registered again later is masked again.
    """
    _registry.forget((values,) if isinstance(values, str) else values)


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


def _keys_carry_secrets(args: Any) -> bool:
    """Whether ``args`` is a mapping with a key that is not plain text or carries a secret."""
    return isinstance(args, Mapping) and any(
        not isinstance(key, str) or _redacted_value(key) is not key for key in args
    )


def _redacted_record(factory: Any, *args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = factory(*args, **kwargs)
    # The message and each argument are redacted in place, keeping the arguments' shape:
    # some formatters (uvicorn's access log) read record.args themselves.
    message = _redacted_value(record.msg)
    if record.args and (message is not record.msg or _keys_carry_secrets(record.args)):
        # The template itself names a secret ("auth_token=%s"): its placeholder would be
        # masked and the arguments no longer fit, so the line is formatted whole, then
        # redacted (the value after the name is what must go). So is a line whose one
        # argument is a mapping with a secret among its keys ("seen %s" % {secret: 1}).
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
