"""Airspace: one profile per person, many journeys, one air-traffic controller.

Layers (see docs/concepts.md):

    domain/   pure business rules (identity, profiles, consent, events, clock)
    store/    SQLAlchemy tables, repositories, Alembic migrations
    engine/   the worker that applies events to profiles, exactly once
    api/      FastAPI apps: tracking (write keys) and admin (secret keys)
    cli.py    `airspace serve | worker | migrate | keys | demo`
"""

__version__ = "0.1.0"
