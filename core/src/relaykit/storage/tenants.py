"""The ``tenants`` table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from relaykit.storage.models import tenants


def name_taken(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.select(tenants.c.id).where(tenants.c.name == name)).first() is not None


def insert(conn: sa.Connection, tenant_id: str, name: str, created_at: dt.datetime) -> None:
    conn.execute(tenants.insert().values(id=tenant_id, name=name, created_at=created_at))


def by_name(conn: sa.Connection, name: str) -> sa.Row[Any] | None:
    """The tenant's id, name and created_at, or ``None``."""
    return conn.execute(sa.select(tenants).where(tenants.c.name == name)).first()


def all_by_name(conn: sa.Connection) -> list[sa.Row[Any]]:
    return list(conn.execute(sa.select(tenants).order_by(tenants.c.name)))
