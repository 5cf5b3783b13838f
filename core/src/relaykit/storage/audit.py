"""The ``audit_events`` table: every statement on it. What an event is, and the chain's rules,
live in :mod:`relaykit.audit`; this module appends (serialised per chain), reads a page,
and walks a chain.

An event is only ever inserted: nothing here updates or deletes one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit.ids import isoformat_z, new_id
from relaykit.storage.database import Database, driver_sql
from relaykit.storage.models import audit_events

a = audit_events

#: The ``prev_digest`` of a chain's first event.
ZERO_DIGEST = "0" * 64
#: The chain of events no tenant owns (key rotation and rewrap).
SYSTEM_CHAIN = "system"

#: The stored columns a digest covers, in the order they are encoded (every column but
#: ``digest`` itself). docs/audit.md spells the encoding out for an outside verifier.
DIGEST_COLUMNS = (
    "id",
    "chain",
    "seq",
    "tenant_id",
    "action",
    "actor",
    "request_id",
    "resource_type",
    "resource_id",
    "integration_id",
    "status_before",
    "status_after",
    "details",
    "created_at",
    "prev_digest",
)

_ENCODER = msgspec.json.Encoder(order="sorted")
_JSON = msgspec.json.Encoder()


def timestamp_text(value: dt.datetime) -> str:
    """``created_at`` in the canonical form: ``2026-01-10T08:45:00Z`` (events are stored in
    whole seconds, as the API shows them); a stored value with a fraction (an edited row)
    keeps it, ``2026-01-10T08:45:00.500000Z``, so the edit shows."""
    value = value.astimezone(dt.UTC)
    if value.microsecond:
        return f"{value:%Y-%m-%dT%H:%M:%S.%f}Z"
    return isoformat_z(value) or ""


def canonical(values: Mapping[str, Any]) -> bytes:
    """An event's canonical form: a JSON array of :data:`DIGEST_COLUMNS`' values in that
    order (``details`` with its keys sorted, ``created_at`` by :func:`timestamp_text`)."""
    return _ENCODER.encode(
        [
            timestamp_text(values[name]) if name == "created_at" else values[name]
            for name in DIGEST_COLUMNS
        ]
    )


def digest_of(values: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of :func:`canonical`."""
    return hashlib.sha256(canonical(values)).hexdigest()


# -- appending ---------------------------------------------------------------------------------

# Plain SQL on the driver's cursor (an append is on the create path): SQLAlchemy's statement
# and parameter processing cost more than the two statements themselves (docs/audit.md).
_HEAD_SQL = "SELECT seq, digest FROM audit_events WHERE chain = ? ORDER BY seq DESC LIMIT 1"
_STORED = (*DIGEST_COLUMNS, "digest")
_INSERT_SQL = (  # the column names are the constants above
    f"INSERT INTO audit_events ({', '.join(_STORED)}) VALUES ({', '.join('?' * len(_STORED))})"  # noqa: S608
)
_LOCK_SQL = "SELECT pg_advisory_xact_lock(?)"


def _lock_key(chain: str) -> int:
    """A signed 64-bit advisory-lock key for the chain."""
    return int.from_bytes(
        hashlib.sha256(b"relaykit.audit:" + chain.encode()).digest()[:8], "big", signed=True
    )


def append(
    conn: sa.Connection,
    *,
    tenant_id: str | None,
    action: str,
    actor: str,
    request_id: str | None,
    resource_type: str,
    resource_id: str | None,
    integration_id: str | None,
    status_before: str | None,
    status_after: str | None,
    details: Mapping[str, Any],
    created_at: dt.datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Append one event to its chain (the tenant's, or :data:`SYSTEM_CHAIN`) inside the
    caller's transaction: the next ``seq``, the head's digest as ``prev_digest``, its own
    digest. What was stored. ``created_at`` is kept in whole seconds (as the API shows it,
    so a client can recompute a digest from what it reads).

    Appends to one chain are serialised: on PostgreSQL by a transaction-scoped advisory lock
    on the chain taken before the head is read (held to the commit); on SQLite the write
    transaction (``BEGIN IMMEDIATE``) already is the lock. The unique ``(chain, seq)`` would
    refuse a fork all the same.
    """
    chain = tenant_id or SYSTEM_CHAIN
    values: dict[str, Any] = {
        "id": event_id or new_id(),
        "chain": chain,
        "seq": 1,
        "tenant_id": tenant_id,
        "action": action,
        "actor": actor,
        "request_id": request_id,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "integration_id": integration_id,
        "status_before": status_before,
        "status_after": status_after,
        "details": dict(details),
        "created_at": created_at.replace(microsecond=0),
        "prev_digest": ZERO_DIGEST,
    }
    sqlite = conn.dialect.name == "sqlite"
    # The DB-API cursor of the transaction's own connection: SQLAlchemy's execution layer
    # (events, result set-up) cost more than these statements themselves.
    cursor = conn.connection.cursor()
    try:
        if not sqlite:
            cursor.execute(driver_sql(conn, _LOCK_SQL), (_lock_key(chain),))
        cursor.execute(driver_sql(conn, _HEAD_SQL), (chain,))
        head = cursor.fetchone()
        if head is not None:
            values["seq"], values["prev_digest"] = int(head[0]) + 1, str(head[1])
        values["digest"] = digest_of(values)
        cursor.execute(driver_sql(conn, _INSERT_SQL), _params(values, sqlite=sqlite))
    finally:
        cursor.close()
    return values


def _params(values: Mapping[str, Any], *, sqlite: bool) -> tuple[Any, ...]:
    """The insert's parameters: ``details`` as JSON text, ``created_at`` as the text
    models.UTCDateTime stores on SQLite."""
    params = [values[name] for name in _STORED]
    params[_DETAILS] = _JSON.encode(values["details"]).decode()
    if sqlite:
        params[_CREATED_AT] = f"{values['created_at']:%Y-%m-%d %H:%M:%S.%f}"
    return tuple(params)


_DETAILS = DIGEST_COLUMNS.index("details")
_CREATED_AT = DIGEST_COLUMNS.index("created_at")


# -- the API's list (plain SQL, as the other lists) ------------------------------------------

#: The columns an event's view is built from, in this order.
VIEW_COLUMNS = (
    "id",
    "action",
    "actor",
    "request_id",
    "resource_type",
    "resource_id",
    "integration_id",
    "status_before",
    "status_after",
    "details",
    "created_at",
    "seq",
    "prev_digest",
    "digest",
)
_SELECT_VIEW = f"SELECT {', '.join(VIEW_COLUMNS)}"


def _timestamp_param(db: Database, value: dt.datetime) -> Any:
    """A timestamp as a plain-SQL parameter: SQLite compares the stored text (models'
    UTCDateTime format), PostgreSQL a ``timestamptz``."""
    value = value.astimezone(dt.UTC)
    return f"{value:%Y-%m-%d %H:%M:%S.%f}" if db.dialect == "sqlite" else value


async def view_page(
    db: Database,
    tenant_id: str,
    *,
    integration_id: str | None,
    action: str | None,
    actor: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    page: int,
    per_page: int,
) -> tuple[int, list[Sequence[Any]]]:
    """The total of the tenant's events matching the filters, and one page of their
    :data:`VIEW_COLUMNS`, newest first (the chain's order: ``seq`` descending), both from
    one snapshot. A tenant's events are exactly its chain (``chain`` is the tenant id)."""
    where = "FROM audit_events WHERE chain = ?"
    params: list[Any] = [tenant_id]
    for column, value in (("integration_id", integration_id), ("action", action), ("actor", actor)):
        if value is not None:
            where += f" AND {column} = ?"
            params.append(value)
    if since is not None:
        where += " AND created_at >= ?"
        params.append(_timestamp_param(db, since))
    if until is not None:
        where += " AND created_at <= ?"
        params.append(_timestamp_param(db, until))
    counted, found = await db.fetch_together(
        [
            (f"SELECT count(*) {where}", params),
            (
                f"{_SELECT_VIEW} {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                (*params, per_page, (page - 1) * per_page),
            ),
        ]
    )
    return int(counted[0][0]), found


_KNOWN_INTEGRATION_SQL = "SELECT 1 FROM integrations WHERE id = ? AND tenant_id = ?"


async def integration_known(db: Database, tenant_id: str, integration_id: str) -> bool:
    """Whether the tenant has, or had (deleted rows included), that integration."""
    return bool(await db.fetch(_KNOWN_INTEGRATION_SQL, (integration_id, tenant_id)))


# -- walking the chains (relaykit audit verify) ------------------------------------------------


def chains(conn: sa.Connection) -> list[str]:
    """Every chain that holds an event."""
    return [row.chain for row in conn.execute(sa.select(a.c.chain).distinct().order_by(a.c.chain))]


def walk(conn: sa.Connection, chain: str, *, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """The chain's events in ``seq`` order, every stored column, read in batches."""
    last = 0
    while True:
        batch = [
            dict(row)
            for row in conn.execute(
                sa.select(a)
                .where(a.c.chain == chain, a.c.seq > last)
                .order_by(a.c.seq)
                .limit(batch_size)
            ).mappings()
        ]
        if not batch:
            return
        yield from batch
        last = int(batch[-1]["seq"])
