"""Hot writes on SQLite, straight to the driver.

A :class:`Statement` wraps a SQLAlchemy Core statement built once (an insert, an update).
On PostgreSQL, :meth:`Statement.execute` is ``conn.execute``. On SQLite it sends the
statement's SQL to the transaction's own DB-API connection, with the parameters bound as
SQLAlchemy binds them: SQLAlchemy compiles the statement once per set of parameter names,
and its bind processors (JSON text, :class:`~relaykit.storage.models.UTCDateTime`'s text)
are looked up then; what a call costs is one list of values and the driver's own execute.
Through SQLAlchemy's execution layer (events, the compiled cache's key, per-parameter
processing, result set-up) the same statement cost several times the statement itself on
the create, dispatch and webhook paths (docs/performance.md).

What it gives back is what both drivers' results answer alike: ``rowcount``,
``fetchone()`` (a row or ``None``) and ``fetchall()``; rows are plain tuples on SQLite,
with the driver's raw values (JSON and timestamps as text). Errors are SQLAlchemy's, as
through ``conn.execute``: a constraint failure is ``sqlalchemy.exc.IntegrityError`` either
way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa


class Result(Protocol):
    """What :meth:`Statement.execute` returns on either database."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class _Prepared(NamedTuple):
    sql: str
    #: per placeholder, in order: the caller's parameter name (or None for a value fixed
    #: in the statement), the fixed value (already processed), the processor
    slots: tuple[tuple[str | None, Any, Callable[[Any], Any] | None], ...]


class Statement:
    """A Core statement executed on the driver directly on SQLite (see the module)."""

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        self._prepared: dict[tuple[str, ...], _Prepared] = {}

    def execute(self, conn: sa.Connection, params: Mapping[str, Any]) -> Result:
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, dict(params))
        names = tuple(params)
        prepared = self._prepared.get(names)
        if prepared is None:
            prepared = self._prepared[names] = _prepare(conn.dialect, self.statement, params)
        values = [
            (processor(params[name]) if processor else params[name]) if name else fixed
            for name, fixed, processor in prepared.slots
        ]
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            return raw.execute(prepared.sql, values)
        except sqlite3.Error as error:
            # the same exception SQLAlchemy would raise (IntegrityError, OperationalError, …)
            raise sa.exc.DBAPIError.instance(
                prepared.sql, values, error, sqlite3.Error, dialect=conn.dialect
            ) from error


def _prepare(dialect: sa.Dialect, statement: Any, params: Mapping[str, Any]) -> _Prepared:
    """The statement's SQL for these parameter names, and where each placeholder's value
    comes from. Values fixed in the statement (``status == 'succeeded'``, an ``IN`` of
    constants) are processed now; a caller's parameter may not be an expanding one."""
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(params))
    # Expanding (IN) parameters are rendered into one placeholder per value.
    expanded = compiled._process_parameters_for_postcompile(compiled.construct_params(params))
    processors: Mapping[str, Any] = compiled._bind_processors
    parents = {
        name: parent for parent, names in expanded.parameter_expansion.items() for name in names
    }
    slots: list[tuple[str | None, Any, Callable[[Any], Any] | None]] = []
    assert expanded.positiontup is not None
    for name in expanded.positiontup:
        processor = processors.get(parents.get(name, name))
        if name in params:
            if name in parents:
                raise ValueError(f"{name}: an expanding parameter cannot be given per call")
            slots.append((name, None, processor))
        else:
            value = expanded.parameters[name]
            slots.append((None, processor(value) if processor else value, None))
    unused = set(params) - set(expanded.positiontup)
    if unused:  # as SQLAlchemy refuses them ("unconsumed column names")
        raise ValueError(f"parameters the statement does not take: {sorted(unused)}")
    return _Prepared(expanded.statement, tuple(slots))
