"""Tenants and bearer tokens in the database."""

from __future__ import annotations

import anyio
import pytest

from relaykit import tenants as store
from relaykit.errors import ConflictError, NotFoundError, ValidationError
from relaykit.settings import Settings
from relaykit.storage.database import Database
from relaykit.testing.databases import stored_text


def test_create_and_list_tenants(database: Database) -> None:
    created = database.transaction_blocking(store.create_tenant, "acme")
    assert len(created.id) == 26 and created.id == created.id.lower()
    assert created.created_at.tzinfo is not None
    assert [t.name for t in database.read_blocking(store.list_tenants)] == ["acme"]
    with pytest.raises(ConflictError):
        database.transaction_blocking(store.create_tenant, "acme")


@pytest.mark.parametrize("name", ["", "Acme", "a b", "-x", "x" * 65, "ünï"])
def test_bad_tenant_names(database: Database, name: str) -> None:
    with pytest.raises(ValidationError):
        database.transaction_blocking(store.create_tenant, name)


def test_token_round_trip_and_revocation(database: Database) -> None:
    tenant = database.transaction_blocking(store.create_tenant, "acme")
    record, token = database.transaction_blocking(store.create_token, "acme", label="ci")
    assert token.startswith("rk_") and record.id in token
    assert anyio.run(store.authenticate, database, token) == (tenant.id, record.id)
    database.transaction_blocking(store.revoke_token, record.id)
    assert anyio.run(store.authenticate, database, token) is None
    again = database.transaction_blocking(
        store.revoke_token, token
    )  # by the whole token, twice: harmless
    assert again.revoked_at is not None
    [listed] = database.read_blocking(store.list_tokens, "acme")
    assert listed.revoked_at is not None and listed.label == "ci"


def test_wrong_and_malformed_tokens_fail(database: Database) -> None:
    database.transaction_blocking(store.create_tenant, "acme")
    _, token = database.transaction_blocking(store.create_token, "acme")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for candidate in [
        tampered,
        "",
        "rk_",
        "Bearer x",
        token + "x",
        token.upper(),
        "rk_" + "0" * 26 + "_" + "a" * 43,
    ]:
        assert anyio.run(store.authenticate, database, candidate) is None


def test_tokens_are_stored_hashed(
    database: Database, settings: Settings, database_url: str
) -> None:
    database.transaction_blocking(store.create_tenant, "acme")
    _, token = database.transaction_blocking(store.create_token, "acme")
    secret = token.rsplit("_", 1)[1]
    stored = stored_text(database_url)
    assert b"acme" in stored  # the scan does see the data
    assert secret.encode() not in stored
    for path in settings.home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_unknown_tenant_and_token(database: Database) -> None:
    with pytest.raises(NotFoundError):
        database.transaction_blocking(store.create_token, "ghost")
    with pytest.raises(NotFoundError):
        database.transaction_blocking(store.revoke_token, "0" * 26)
