"""Alembic migrations; each runs on PostgreSQL and SQLite."""
