"""Configuration, read from the environment (prefix `AIRSPACE_`) or a `.env` file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of an Airspace process; see docs/operations.md."""

    model_config = SettingsConfigDict(env_prefix="AIRSPACE_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///airspace.db",
        description="SQLAlchemy URL: sqlite:///path.db (default, embedded) or "
        "postgresql+psycopg://user:pass@host/db",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL",
        description="SQLite durability: NORMAL survives a killed process; FULL also "
        "survives power loss, at some cost in speed",
    )
    secret: str = Field(
        "change-me-airspace-secret",
        description="Key for the keyed hashes of erased identifiers; set a long random value",
    )
    host: str = Field("127.0.0.1", description="Address `airspace serve` listens on")
    port: int = Field(8000, ge=1, le=65535, description="Port `airspace serve` listens on")
    public_url: str = Field(
        "",
        description="URL browsers reach the API on, for the analytics.js settings; "
        "empty: the URL the settings request came in on",
    )
    rate_limit_per_second: float = Field(
        5000.0, gt=0, description="Sustained events per second accepted per write key"
    )
    rate_limit_burst: float = Field(
        50000.0, gt=0, description="Events a write key may send in a burst above the rate"
    )
    dedupe_retention_days: float = Field(
        7.0, gt=0, description="How long a messageId is remembered for deduplication"
    )
    decision_log_retention_days: float = Field(
        365.0,
        gt=0,
        description="How long the decision log keeps a decision (what `airspace explain` "
        "and the decisions API can answer about); older ones are deleted once a day",
    )
    worker_batch_size: int = Field(
        1000, ge=1, le=10000, description="Inbox events a worker applies per transaction"
    )
    worker_batch_seconds: float = Field(
        0.05,
        gt=0,
        le=10,
        description="About how long one worker batch should take: shorter keeps the time "
        "from an event to its journeys' reaction low, longer favours throughput",
    )
    worker_idle_seconds: float = Field(
        0.05, gt=0, description="How long an idle worker waits before looking for work again"
    )
    phone_region: str | None = Field(
        None, description="Region (e.g. US, DE) for phone numbers written without +country"
    )
    identifier_limits: dict[str, int] = Field(
        default_factory=dict,
        description='Per-type identifier limits, e.g. {"email": 5, "anonymous_id": 100}; '
        "user_id is always 1",
    )
