"""Alembic migrations: the one way relaykit's schema is made, on SQLite and PostgreSQL."""
