"""The tables. SQLModel declares them (one place for the schema); queries use SQLAlchemy Core.

Core statements over these tables return plain rows without building ORM objects, which
keeps the hot paths (token check, list) cheap; see docs/architecture.md.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def sqlite_timestamp(value: dt.datetime) -> str:
    """An aware datetime as SQLite keeps it (see :class:`UTCDateTime`)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given for a UTC column")
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S.%f}"


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Timestamps stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, PostgreSQL keeps ``timestamptz``; both read back as aware UTC.

    On SQLite the text is written and read here, in SQLAlchemy's own storage format
    (``YYYY-MM-DD HH:MM:SS.ffffff``, fixed width, so comparisons in SQL order correctly):
    ``datetime.fromisoformat`` reads it several times faster than the dialect's regex, which
    was the largest cost of a list (four timestamps a row).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        if dialect.name == "sqlite":
            return sqlite_timestamp(value)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite raw text, should a driver hand one back
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _ts(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, **kw))


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: str = Field(primary_key=True, max_length=26)
    name: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    created_at: dt.datetime = _ts()


class ApiToken(SQLModel, table=True):
    """A bearer token. Only the SHA-256 of its secret part is stored."""

    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True, max_length=26)
    tenant_id: str = Field(
        sa_column=sa.Column(
            sa.String(26), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        )
    )
    secret_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    label: str | None = Field(default=None, sa_column=sa.Column(sa.String(200), nullable=True))
    created_at: dt.datetime = _ts()
    revoked_at: dt.datetime | None = _ts(nullable=True)


class Integration(SQLModel, table=True):
    """A tenant's configured provider. At most one not-deleted row per tenant and provider."""

    __tablename__ = "integrations"
    __table_args__ = (
        sa.Index(
            "uq_integrations_tenant_provider_live",
            "tenant_id",
            "provider",
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
        # The list: a tenant's live rows in id order, however long its deleted history.
        sa.Index(
            "ix_integrations_tenant_live",
            "tenant_id",
            "id",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
        # The verification queue: due pending rows, oldest due first.
        sa.Index(
            "ix_integrations_verify_queue",
            "next_verify_at",
            sqlite_where=sa.text("status = 'pending_verify' AND deleted_at IS NULL"),
            postgresql_where=sa.text("status = 'pending_verify' AND deleted_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=26)
    tenant_id: str = Field(
        sa_column=sa.Column(
            sa.String(26), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        )
    )
    provider: str = Field(sa_column=sa.Column(sa.String(63), nullable=False))
    category: str = Field(sa_column=sa.Column(sa.String(63), nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    enabled_capabilities: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    public_credentials: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    sealed_credentials: bytes | None = Field(
        default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True)
    )
    credentials_version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False))
    # "metadata" is SQLAlchemy's own attribute name on declarative classes.
    meta: dict[str, Any] = Field(sa_column=sa.Column("metadata", sa.JSON, nullable=False))
    # What the verification worker last concluded: shown to the tenant under
    # metadata.verification, kept apart so a PATCH of metadata cannot erase it.
    verification: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON, nullable=True)
    )
    verify_attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    next_verify_at: dt.datetime | None = _ts(nullable=True)
    lease_owner: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    lease_expires_at: dt.datetime | None = _ts(nullable=True)
    verified_at: dt.datetime | None = _ts(nullable=True)
    created_at: dt.datetime = _ts()
    updated_at: dt.datetime = _ts()
    deleted_at: dt.datetime | None = _ts(nullable=True)
    #: whether the latest claim took the row from a worker whose lease had expired (set by
    #: the claim from the lease it replaced: the lease-reclaim metric)
    lease_reclaimed: bool = Field(
        default=False,
        sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()),
    )


def _fk(target: str, *, nullable: bool = False) -> Any:
    return Field(
        sa_column=sa.Column(
            sa.String(26), sa.ForeignKey(target, ondelete="CASCADE"), nullable=nullable
        )
    )


class RoutingRule(SQLModel, table=True):
    """Which integration serves a capability for a tenant, and which one takes over."""

    __tablename__ = "routing_rules"
    __table_args__ = (
        sa.Index("ix_routing_rules_tenant_capability", "tenant_id", "capability"),
        # At most one default per tenant and capability, enforced by the database.
        sa.Index(
            "uq_routing_rules_default",
            "tenant_id",
            "capability",
            unique=True,
            sqlite_where=sa.text("is_default"),
            postgresql_where=sa.text("is_default"),
        ),
    )

    id: str = Field(primary_key=True, max_length=26)
    tenant_id: str = _fk("tenants.id")
    capability: str = Field(sa_column=sa.Column(sa.String(63), nullable=False))
    integration_id: str = _fk("integrations.id")
    fallback_integration_id: str | None = _fk("integrations.id", nullable=True)
    is_default: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False))
    priority: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    created_at: dt.datetime = _ts()
    updated_at: dt.datetime = _ts()


class Operation(SQLModel, table=True):
    """One request to do something (send an SMS, take a payment), however many tries.

    Written before the first provider call (``in_progress``) and finished after the last
    (``succeeded``, ``failed``, ``outcome_unknown``): the ledger never misses an action.
    """

    __tablename__ = "operations"
    __table_args__ = (
        sa.Index(
            "uq_operations_idempotency_key",
            "tenant_id",
            "idempotency_key",
            unique=True,
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        ),
        # The ledger: a tenant's operations, newest first.
        sa.Index("ix_operations_tenant_id_id", "tenant_id", "id"),
        # The sweep: operations still in progress, by when their process is presumed gone.
        sa.Index(
            "ix_operations_in_progress",
            "lease_expires_at",
            sqlite_where=sa.text("status = 'in_progress'"),
            postgresql_where=sa.text("status = 'in_progress'"),
        ),
        # Retention and key expiry.
        sa.Index("ix_operations_created_at", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=26)
    tenant_id: str = _fk("tenants.id")
    capability: str = Field(sa_column=sa.Column(sa.String(63), nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    integration_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(26)))
    idempotency_key: str | None = Field(default=None, sa_column=sa.Column(sa.String(255)))
    request_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    #: the response as first given (status code and body), replayed for a repeated key
    response: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))
    created_at: dt.datetime = _ts()
    completed_at: dt.datetime | None = _ts(nullable=True)
    #: while in progress: past this, the process running it is presumed gone
    lease_expires_at: dt.datetime | None = _ts(nullable=True)
    #: when its idempotency key stops holding (the key is then released)
    key_expires_at: dt.datetime | None = _ts(nullable=True)


class DeliveryAttempt(SQLModel, table=True):
    """One try of an operation with one integration: written ``in_flight`` before the
    provider call, finished after it."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        sa.Index("ix_delivery_attempts_tenant_id_id", "tenant_id", "id"),
        sa.Index("ix_delivery_attempts_operation", "operation_id"),
        # The sweep: attempts whose process may be gone.
        sa.Index(
            "ix_delivery_attempts_in_flight",
            "started_at",
            sqlite_where=sa.text("status = 'in_flight'"),
            postgresql_where=sa.text("status = 'in_flight'"),
        ),
        # A webhook finds the attempt it is about by the provider's id of the object sent.
        sa.Index("ix_delivery_attempts_provider_object", "integration_id", "provider_object_id"),
    )

    id: str = Field(primary_key=True, max_length=26)
    tenant_id: str = _fk("tenants.id")
    operation_id: str = _fk("operations.id")
    integration_id: str = _fk("integrations.id")
    provider: str = Field(sa_column=sa.Column(sa.String(63), nullable=False))
    capability: str = Field(sa_column=sa.Column(sa.String(63), nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    #: null while in flight
    outcome: str | None = Field(default=None, sa_column=sa.Column(sa.String(20), nullable=True))
    provider_status_code: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    provider_code: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    message: str = Field(sa_column=sa.Column(sa.String(500), nullable=False))
    duration_ms: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    started_at: dt.datetime = _ts()
    completed_at: dt.datetime | None = _ts(nullable=True)
    #: the provider's id of what it accepted (a message, a payment, a refund): set when the
    #: try succeeded, the key its webhooks name it by
    provider_object_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(255)))
    #: what the provider's webhooks said became of it (``delivered``, ``succeeded`` …); it
    #: only moves forward (relaykit.webhooks.STATUS_RANK)
    delivery_status: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    delivery_updated_at: dt.datetime | None = _ts(nullable=True)


class WebhookEvent(SQLModel, table=True):
    """One event a provider's webhook carried, stored once per integration and dedupe key
    (a provider delivers at least once), with what applying it did."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        # A repeat of an event is refused by the database, however many arrive at once.
        sa.UniqueConstraint("integration_id", "dedupe_key", name="uq_webhook_events_dedupe"),
        # The list: a tenant's events, newest first.
        sa.Index("ix_webhook_events_tenant_id_id", "tenant_id", "id"),
        # A send that ends after its webhook arrived picks up the events about it.
        sa.Index("ix_webhook_events_object", "integration_id", "object_id"),
    )

    id: str = Field(primary_key=True, max_length=26)
    tenant_id: str = _fk("tenants.id")
    integration_id: str = _fk("integrations.id")
    provider: str = Field(sa_column=sa.Column(sa.String(63), nullable=False))
    dedupe_key: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    type: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    object_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(255)))
    status: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    provider_code: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    occurred_at: dt.datetime | None = _ts(nullable=True)
    received_at: dt.datetime = _ts()
    #: whether it moved any attempt's delivery status (now or when its send ended)
    applied: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False))
    #: how many attempts it moved
    attempt_count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))


class AuditEvent(SQLModel, table=True):
    """One change to a tenant's configuration, who made it and when, append-only.

    Written in the transaction of the change it records. Events are hash-chained per tenant
    (``chain``: the tenant id, or ``system`` for changes no tenant owns, such as key
    rotation): ``digest`` is the SHA-256 of the event's canonical form including
    ``prev_digest``, the digest of the event before it in the chain (``seq - 1``).
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        # One event per place in a chain: two writers cannot both extend it from one head.
        sa.UniqueConstraint("chain", "seq", name="uq_audit_events_chain_seq"),
        # The list is a tenant's chain newest first (the unique index above serves it);
        # one integration's events are a slice of it.
        sa.Index("ix_audit_events_integration", "chain", "integration_id", "seq"),
    )

    id: str = Field(primary_key=True, max_length=26)
    chain: str = Field(sa_column=sa.Column(sa.String(26), nullable=False))
    seq: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    #: null for a system event; no foreign key, so the trail outlives what it describes
    tenant_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(26)))
    action: str = Field(sa_column=sa.Column(sa.String(63), nullable=False))
    #: the token id of the request, ``worker`` or ``cli``
    actor: str = Field(sa_column=sa.Column(sa.String(63), nullable=False))
    request_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(128)))
    resource_type: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    resource_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(26)))
    integration_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(26)))
    status_before: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    status_after: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    #: what changed, never a value of a credential (field names only)
    details: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    created_at: dt.datetime = _ts()
    prev_digest: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    digest: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))


class WorkerHeartbeat(SQLModel, table=True):
    """A verification worker's sign of life: written after each claim pass that reached the
    database (so a worker that cannot claim stops beating), read by ``/ready``."""

    __tablename__ = "worker_heartbeats"

    #: the worker's owner name (``host:pid:suffix``)
    owner: str = Field(primary_key=True, max_length=128)
    started_at: dt.datetime = _ts()
    beat_at: dt.datetime = _ts()
    #: the error of the latest failed claim pass (its type only), cleared by a good one
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    #: claim passes that failed since the worker started
    failures: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))


class EncryptionKey(SQLModel, table=True):
    """A key-encryption key relaykit has used: which one wraps new data keys (``primary``:
    exactly one row), which still wrap some (``active``) and which were retired. The
    database, not a node's keyring, says which key is primary, so every node seals under the
    same key (:mod:`relaykit.keys.custody`)."""

    __tablename__ = "encryption_keys"
    __table_args__ = (
        # One primary key at most: two nodes rotating (or starting on a new database) at
        # the same moment cannot both make theirs primary; the second one's write fails.
        sa.Index(
            "uq_encryption_keys_one_primary",
            "state",
            unique=True,
            sqlite_where=sa.text("state = 'primary'"),
            postgresql_where=sa.text("state = 'primary'"),
        ),
    )

    key_provider: str = Field(primary_key=True, max_length=64)
    #: a keyring key's id, or a KMS key's id or ARN
    key_id: str = Field(primary_key=True, max_length=2048)
    #: ``primary``, ``active`` or ``retired``
    state: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    created_at: dt.datetime = _ts()
    updated_at: dt.datetime = _ts()


class ConsoleSession(SQLModel, table=True):
    """A browser's signed-in session on the console (relaykit_server.console.sessions).

    The cookie carries a random secret; only its SHA-256 is stored, so a copy of the
    database signs nobody in. A session stands for the token it was opened with: revoking
    the token ends it, and so does deleting the token or the tenant.
    """

    __tablename__ = "console_sessions"
    __table_args__ = (
        sa.Index("ix_console_sessions_expires_at", "expires_at"),
        # the cascades from a deleted token or tenant find their sessions by these
        sa.Index("ix_console_sessions_token_id", "token_id"),
        sa.Index("ix_console_sessions_tenant_id", "tenant_id"),
    )

    #: hex SHA-256 of the cookie's secret
    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(
        sa_column=sa.Column(
            sa.String(26), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        )
    )
    token_id: str = Field(
        sa_column=sa.Column(
            sa.String(26), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False
        )
    )
    #: the synchronizer token every form of the session carries
    csrf_token: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    created_at: dt.datetime = _ts()
    expires_at: dt.datetime = _ts()


tenants = Tenant.__table__  # type: ignore[attr-defined]
api_tokens = ApiToken.__table__  # type: ignore[attr-defined]
integrations = Integration.__table__  # type: ignore[attr-defined]
routing_rules = RoutingRule.__table__  # type: ignore[attr-defined]
operations = Operation.__table__  # type: ignore[attr-defined]
delivery_attempts = DeliveryAttempt.__table__  # type: ignore[attr-defined]
webhook_events = WebhookEvent.__table__  # type: ignore[attr-defined]
audit_events = AuditEvent.__table__  # type: ignore[attr-defined]
worker_heartbeats = WorkerHeartbeat.__table__  # type: ignore[attr-defined]
encryption_keys = EncryptionKey.__table__  # type: ignore[attr-defined]
console_sessions = ConsoleSession.__table__  # type: ignore[attr-defined]
metadata = SQLModel.metadata
