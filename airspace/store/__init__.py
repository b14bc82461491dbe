"""Persistence: tables (`*Row`), repositories, and Alembic migrations.

database.py    engine set-up (SQLite WAL pragmas, PostgreSQL), transactions
tables.py      every table; ORM rows never leave this package
migrate.py     applies the Alembic migrations in `migrations/`
keys.py        API keys, stored hashed
inbox.py       accepted events (deduplicated) and the quarantine
identity.py    identifiers, profiles, merges: what the worker reads and writes
admin.py       read models for the admin API; export and erasure of a person
"""
