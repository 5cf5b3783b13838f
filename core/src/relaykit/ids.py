"""Identifiers and timestamps in the forms the contract fixes.

Ids are ULIDs in lowercase (26 characters): sortable by creation time, so "newest first"
needs no second column. Timestamps are UTC and written ISO 8601 with a ``Z``.
"""

from __future__ import annotations

import datetime as dt

from ulid import ULID


def new_id() -> str:
    return str(ULID()).lower()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def isoformat_z(value: dt.datetime | None) -> str | None:
    """``2026-01-10T08:45:00Z``: whole seconds, as the contract writes them."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
