"""The ``integrations`` table: every statement on it. The rules live in relaykit.integrations
(requests), relaykit.worker (verification) and relaykit.lifecycle (statuses).

Every status change goes through :func:`change_status`, which takes a lifecycle action and
the :class:`~relaykit.lifecycle.VerificationRecord` that goes with it, and moves the row
only if it is still in the status the caller saw (and still matches ``only_if``): a change
that lost a race reports it instead of writing over the winner.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from relaykit.lifecycle import Action, Status, VerificationRecord, next_status
from relaykit.pagination import is_id
from relaykit.storage.database import Database, json_value
from relaykit.storage.fast import Statement
from relaykit.storage.models import integrations

t = integrations
live = t.c.deleted_at.is_(None)


# -- the API's reads (plain SQL: the hottest reads; see Database.fetch) ---------------------

#: The columns an integration's view is built from, in this order.
VIEW_COLUMNS = (
    "id",
    "provider",
    "category",
    "status",
    "enabled_capabilities",
    "public_credentials",
    "metadata",
    "verification",
    "verified_at",
    "created_at",
    "updated_at",
)

# ``deleted_at IS NULL`` is written as the partial indexes' condition, so the list walks
# only the tenant's live rows however long its history (migration 0003).
_SELECT_VIEW = f"SELECT {', '.join(VIEW_COLUMNS)}"
_LIVE = "FROM integrations WHERE tenant_id = ? AND deleted_at IS NULL"
_GET_SQL = f"{_SELECT_VIEW} {_LIVE} AND id = ?"


async def view_row(db: Database, tenant_id: str, integration_id: str) -> Sequence[Any] | None:
    """The tenant's live integration's :data:`VIEW_COLUMNS` (raw values), or ``None``;
    another tenant's id finds nothing."""
    if not is_id(integration_id):
        return None
    found = await db.fetch(_GET_SQL, (tenant_id, integration_id))
    return found[0] if found else None


async def view_page(
    db: Database,
    tenant_id: str,
    *,
    status: str | None,
    category: str | None,
    page: int,
    per_page: int,
) -> tuple[int, list[Sequence[Any]]]:
    """The total of the tenant's live integrations matching the filters, and one page of
    their :data:`VIEW_COLUMNS` in id (creation) order, both from one snapshot."""
    where = _LIVE
    params: list[Any] = [tenant_id]
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    if category is not None:
        where += " AND category = ?"
        params.append(category)
    if db.dialect == "postgresql":
        # One statement is one snapshot: no transaction, one round trip (pg_reads). The
        # total comes with every row, and alone (NULL columns) past the last page.
        rows = await db.fetch(
            f"SELECT counted.total, page.* FROM (SELECT count(*) AS total {where}) AS counted"  # noqa: S608
            f" LEFT JOIN ({_SELECT_VIEW} {where} ORDER BY id LIMIT ? OFFSET ?) AS page"
            " ON TRUE ORDER BY page.id",
            (*params, *params, per_page, (page - 1) * per_page),
        )
        total = int(rows[0][0])
        return total, [row[1:] for row in rows if row[1] is not None]
    # Two statements beat one with a window count: SQLite sorts the window's output again.
    counted, found = await db.fetch_together(
        [
            (f"SELECT count(*) {where}", params),
            (
                f"{_SELECT_VIEW} {where} ORDER BY id LIMIT ? OFFSET ?",
                (*params, per_page, (page - 1) * per_page),
            ),
        ]
    )
    return int(counted[0][0]), found


_WEBHOOK_TARGET_SQL = (
    "SELECT tenant_id, provider, public_credentials, sealed_credentials FROM integrations"
    " WHERE id = ? AND deleted_at IS NULL"
)


async def webhook_target(
    db: Database, integration_id: str, tenant_id: str | None = None
) -> tuple[str, str, dict[str, Any], bytes | None] | None:
    """A live integration's tenant, provider, public credentials and sealed blob, for
    checking its webhooks (of ``tenant_id``'s only, when given), or ``None``. Plain SQL: the
    receiver's one read."""
    if not is_id(integration_id):
        return None
    sql, params = _WEBHOOK_TARGET_SQL, [integration_id]
    if tenant_id is not None:
        sql, params = sql + " AND tenant_id = ?", [integration_id, tenant_id]
    found = await db.fetch(sql, params)
    if not found:
        return None
    owner, provider, public, sealed = found[0]
    return owner, provider, json_value(public) or {}, bytes(sealed) if sealed else None


def configured_providers(conn: sa.Connection, tenant_id: str) -> set[str]:
    """Names of the providers the tenant has a live integration for."""
    rows = conn.execute(sa.select(t.c.provider).where(t.c.tenant_id == tenant_id, live))
    return {row.provider for row in rows}


def find(conn: sa.Connection, tenant_id: str, integration_id: str) -> sa.Row[Any] | None:
    """The tenant's live row with that id; another tenant's id finds nothing."""
    if not is_id(integration_id):
        return None
    return conn.execute(
        sa.select(t).where(t.c.id == integration_id, t.c.tenant_id == tenant_id, live)
    ).first()


def credentials_if_usable(
    conn: sa.Connection, tenant_id: str, integration_id: str, capability: str
) -> Any:
    """The integration's provider, public and sealed credentials and credentials version as
    they are now, if it is live, ``active`` and has ``capability`` enabled; else ``None``."""
    row = conn.execute(
        sa.select(
            t.c.enabled_capabilities,
            t.c.provider,
            t.c.public_credentials,
            t.c.sealed_credentials,
            t.c.credentials_version,
        ).where(
            t.c.id == integration_id,
            t.c.tenant_id == tenant_id,
            t.c.status == Status.ACTIVE.value,
            live,
        )
    ).first()
    return row if row is not None and capability in row.enabled_capabilities else None


# -- the tenant's writes ---------------------------------------------------------------------


def _insert_if_new(dialect: Any) -> sa.Insert:
    """An insert that does nothing when the tenant already has a live row for the provider
    (the partial unique index is the conflict target). Built once, so SQLAlchemy reuses its
    compiled form."""
    return (
        dialect.insert(t)
        .on_conflict_do_nothing(index_elements=[t.c.tenant_id, t.c.provider], index_where=live)
        .returning(t.c.id)  # rowcount is not reliable here on psycopg
    )


#: relaykit runs on SQLite and PostgreSQL only; both have ON CONFLICT on a partial index.
_INSERT_IF_NEW = {
    "sqlite": Statement(_insert_if_new(sqlite)),
    "postgresql": Statement(_insert_if_new(postgresql)),
}


def insert_if_new(conn: sa.Connection, values: Mapping[str, Any]) -> bool:
    """Insert the row unless the tenant has a live one for the provider: whether it did.
    One statement, so the check and the insert cannot race."""
    return _INSERT_IF_NEW[conn.dialect.name].execute(conn, values).fetchone() is not None


def update_fields(
    conn: sa.Connection,
    integration_id: str,
    values: Mapping[str, Any],
    *,
    only_if: Mapping[str, Any] | None = None,
) -> bool:
    """Set columns that are not the status (metadata, capabilities) on a live row, if it
    still matches ``only_if``: whether it did."""
    if "status" in values:
        raise ValueError("status changes go through change_status")
    return _update(conn, integration_id, dict(values), only_if or {})


def soft_delete(conn: sa.Connection, tenant_id: str, integration_id: str, now: dt.datetime) -> bool:
    """Mark the tenant's live row deleted (any status) and erase its sealed credentials:
    the row stays for history, the secret is destroyed. Whether there was one."""
    if not is_id(integration_id):
        return False
    result = conn.execute(
        t.update()
        .where(t.c.id == integration_id, t.c.tenant_id == tenant_id, live)
        .values(deleted_at=now, updated_at=now, lease_owner=None, sealed_credentials=None)
    )
    return result.rowcount == 1


def change_status(
    conn: sa.Connection,
    integration_id: str,
    action: Action,
    *,
    current: Status | str,
    verification: VerificationRecord | Literal["keep"] | None,
    now: dt.datetime,
    also: Mapping[str, Any] | None = None,
    only_if: Mapping[str, Any] | None = None,
) -> bool:
    """Move a live row from ``current`` by ``action`` (:func:`relaykit.lifecycle.next_status`
    refuses a move the table does not hold), record ``verification`` (``None`` clears it,
    ``"keep"`` leaves it) and set ``also``: only if the row is still in ``current`` and
    matches ``only_if``. Whether it moved."""
    values = dict(also or {})
    values["status"] = next_status(action, current).value
    if verification != "keep":
        values["verification"] = verification
    values["updated_at"] = now
    return _update(
        conn, integration_id, values, {"status": Status(current).value, **(only_if or {})}
    )


# Update statements by the columns they set and compare, built once each: SQLAlchemy then
# reuses their compiled form, where building them per call cost more than running them.
_UPDATES: dict[tuple[tuple[str, ...], tuple[str, ...]], sa.Update] = {}


def _update(
    conn: sa.Connection, integration_id: str, values: dict[str, Any], only_if: Mapping[str, Any]
) -> bool:
    shape = (tuple(sorted(values)), tuple(sorted(only_if)))
    statement = _UPDATES.get(shape)
    if statement is None:
        conditions = [t.c.id == sa.bindparam("b_id"), live]
        conditions += [t.c[name] == sa.bindparam(f"b_{name}") for name in shape[1]]
        statement = _UPDATES[shape] = t.update().where(*conditions)
    params = {**values, "b_id": integration_id}
    params.update({f"b_{name}": value for name, value in only_if.items()})
    return conn.execute(statement, params).rowcount == 1


# -- the verification queue ------------------------------------------------------------------


def _claim_statement(*, skip_locked: bool) -> sa.Update:
    """Lease up to ``b_limit`` rows due at ``b_now``, oldest due first, counting the attempt;
    return what a check needs. On PostgreSQL rows other workers are claiming are skipped,
    not waited for; on SQLite the write transaction (BEGIN IMMEDIATE) is the lock."""
    due = (
        sa.select(t.c.id)
        .where(
            t.c.status == Status.PENDING_VERIFY.value,
            live,
            t.c.next_verify_at <= sa.bindparam("b_now"),
            sa.or_(t.c.lease_expires_at.is_(None), t.c.lease_expires_at < sa.bindparam("b_now")),
        )
        .order_by(t.c.next_verify_at)
        .limit(sa.bindparam("b_limit"))
    )
    if skip_locked:
        due = due.with_for_update(skip_locked=True)
    return (
        t.update()
        .where(t.c.id.in_(due.scalar_subquery()))
        .values(
            verify_attempts=t.c.verify_attempts + 1,
            # SET reads the row as it was: a lease still on it had expired (a reclaim)
            lease_reclaimed=t.c.lease_owner.is_not(None),
        )
        .returning(
            t.c.id,
            t.c.tenant_id,
            t.c.provider,
            t.c.public_credentials,
            t.c.sealed_credentials,
            t.c.credentials_version,
            t.c.verify_attempts,
            t.c.lease_reclaimed,
        )
    )


_CLAIM = {
    "sqlite": _claim_statement(skip_locked=False),
    "postgresql": _claim_statement(skip_locked=True),
}


def claim_due_verifications(
    conn: sa.Connection, *, owner: str, limit: int, now: dt.datetime, lease_until: dt.datetime
) -> list[sa.Row[Any]]:
    """Lease up to ``limit`` due ``pending_verify`` rows to ``owner`` until ``lease_until``
    and count the attempt: their id, tenant, provider, credentials (public and sealed),
    credentials version, attempt number and whether the claim took the row from a worker
    whose lease had expired (``lease_reclaimed``)."""
    params = {
        "b_now": now,
        "b_limit": limit,
        "lease_owner": owner,
        "lease_expires_at": lease_until,
    }
    return list(conn.execute(_CLAIM[conn.dialect.name], params))


def record_verification_result(
    conn: sa.Connection,
    integration_id: str,
    *,
    owner: str,
    credentials_version: int,
    action: Action,
    verification: VerificationRecord,
    now: dt.datetime,
    next_verify_at: dt.datetime | None,
) -> bool:
    """Apply a check's outcome and return its lease, only on the row as it was claimed (the
    same lease and credentials, still pending, not deleted): whether it applied. A PATCH, a
    delete or a reclaim during the check makes the result stale."""
    also: dict[str, Any] = {
        "next_verify_at": next_verify_at,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if action is Action.VERIFICATION_ACCEPTED:
        also["verified_at"] = now
    return change_status(
        conn,
        integration_id,
        action,
        current=Status.PENDING_VERIFY,
        verification=verification,
        now=now,
        also=also,
        only_if={"lease_owner": owner, "credentials_version": credentials_version},
    )


def release_leases(conn: sa.Connection, owner: str) -> int:
    """Return the leases ``owner`` holds (checks that did not finish); their attempt does
    not count. How many."""
    fewer = t.c.verify_attempts - 1
    floor = sa.func.max(fewer, 0) if conn.dialect.name == "sqlite" else sa.func.greatest(fewer, 0)
    statement = (
        t.update()
        .where(t.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None, verify_attempts=floor)
    )
    return int(conn.execute(statement).rowcount)


# -- sealed credentials (key status and rewrap) ----------------------------------------------


_sealed = sa.and_(t.c.sealed_credentials.is_not(None), live)


def sealed_blobs(conn: sa.Connection) -> Iterator[bytes]:
    """Every live row's sealed blob (a deleted row's is erased)."""
    for row in conn.execute(sa.select(t.c.sealed_credentials).where(_sealed)):
        yield row.sealed_credentials


def count_sealed(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).where(_sealed)).scalar_one())


def sealed_after(conn: sa.Connection, last_id: str, limit: int) -> list[sa.Row[Any]]:
    """Up to ``limit`` live rows with sealed credentials after ``last_id`` in id order: id,
    tenant, provider and the blob."""
    return list(
        conn.execute(
            sa.select(t.c.id, t.c.tenant_id, t.c.provider, t.c.sealed_credentials)
            .where(_sealed, t.c.id > last_id)
            .order_by(t.c.id)
            .limit(limit)
        )
    )


def replace_sealed(conn: sa.Connection, replacements: Sequence[tuple[str, bytes, bytes]]) -> int:
    """For each ``(id, old, new)``, store ``new`` if the row still holds ``old`` (a row
    re-sealed meanwhile is left alone): how many were replaced."""
    done = 0
    for integration_id, old, new in replacements:
        result = conn.execute(
            t.update()
            .where(t.c.id == integration_id, t.c.sealed_credentials == old)
            .values(sealed_credentials=new)
        )
        done += result.rowcount
    return done
