"""Every table Airspace keeps. Rows that hold data about a person are marked
`PERSONAL` below: erasure and export cover each of them (tested)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JsonType = JSON().with_variant(JSONB(), "postgresql")
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


class UtcTime(TypeDecorator[datetime]):
    """A moment in UTC: written as UTC, always read back timezone-aware (SQLite too)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive times; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored; give a timezone")
        moment = value.astimezone(UTC)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as timezone-aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


INBOX_PARTITIONS = 16


class Base(DeclarativeBase):
    """Declarative base of every table."""


class ApiKeyRow(Base):
    """An API key: `write` (tracking only) or `admin`; the secret is kept only as a hash."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcTime(), nullable=True)


class InboxRow(Base):
    """PERSONAL. Accepted events waiting for the worker, in arrival order per partition."""

    __tablename__ = "inbox"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    partition: Mapped[int] = mapped_column(SmallInteger)
    write_key_id: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str] = mapped_column(String(512))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcTime())
    __table_args__ = (
        Index("ix_inbox_partition_id", "partition", "id"),
        {"sqlite_autoincrement": True},
    )


class InboxPartitionRow(Base):
    """One row per inbox partition: a worker locks it to apply that partition's events."""

    __tablename__ = "inbox_partitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_run_at: Mapped[datetime | None] = mapped_column(UtcTime(), nullable=True)


class MessageIdRow(Base):
    """messageIds seen per write key, for deduplication within the retention window."""

    __tablename__ = "message_ids"
    write_key_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UtcTime(), index=True)


class QuarantineRow(Base):
    """PERSONAL. Events refused, with the reason; nothing refused is dropped silently."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    write_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stage: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcTime(), index=True)
    # Ids are never reused (SQLite would after deletes): readers page with after_id.
    __table_args__ = ({"sqlite_autoincrement": True},)


class ProfileRow(Base):
    """PERSONAL. One person: traits, computed traits, consent."""

    __tablename__ = "profiles"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcTime())
    updated_at: Mapped[datetime] = mapped_column(UtcTime())
    traits: Mapped[dict[str, Any]] = mapped_column(JsonType)
    trait_times: Mapped[dict[str, Any]] = mapped_column(JsonType)
    computed: Mapped[dict[str, Any]] = mapped_column(JsonType)
    consent: Mapped[dict[str, Any]] = mapped_column(JsonType)


class IdentifierRow(Base):
    """PERSONAL. Identifier → profile; the key is `type:value`."""

    __tablename__ = "identifiers"
    key: Mapped[str] = mapped_column(String(600), primary_key=True)
    type: Mapped[str] = mapped_column(String(80))
    value: Mapped[str] = mapped_column(String(520))
    profile_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcTime())


class ProfileAliasRow(Base):
    """PERSONAL. The id of a merged profile → the profile it lives on in."""

    __tablename__ = "profile_aliases"
    old_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(32), index=True)
    merged_at: Mapped[datetime] = mapped_column(UtcTime())


class MergeRow(Base):
    """PERSONAL. Every merge, with the event and identifiers that caused it."""

    __tablename__ = "merges"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    survivor_id: Mapped[str] = mapped_column(String(32), index=True)
    merged_id: Mapped[str] = mapped_column(String(32), index=True)
    message_id: Mapped[str] = mapped_column(String(512))
    cause: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcTime())
    __table_args__ = ({"sqlite_autoincrement": True},)


class EventRow(Base):
    """PERSONAL. The event log: every applied event, on the profile it belongs to."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    profile_id: Mapped[str] = mapped_column(String(32))
    write_key_id: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str] = mapped_column(String(512))
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    timestamp: Mapped[datetime] = mapped_column(UtcTime())
    received_at: Mapped[datetime] = mapped_column(UtcTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    __table_args__ = (
        Index("ix_events_profile_id", "profile_id", "id"),
        Index("ix_events_name_time", "name", "timestamp", "profile_id"),
        {"sqlite_autoincrement": True},
    )


class ErasedIdentifierRow(Base):
    """Keyed hashes (HMAC) of erased identifiers: later events carrying them are dropped."""

    __tablename__ = "erased_identifiers"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UtcTime())


class DefinitionRow(Base):
    """One version of a definition (segment, journey, topic, store, region, settings)."""

    __tablename__ = "definitions"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # active | paused | archived | replaced
    body: Mapped[dict[str, Any]] = mapped_column(JsonType)
    source: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UtcTime())
    changed_at: Mapped[datetime] = mapped_column(UtcTime())
    __table_args__ = (
        Index("ux_definitions_kind_ref_version", "kind", "ref", "version", unique=True),
        {"sqlite_autoincrement": True},
    )


class WorkspaceRevisionRow(Base):
    """One row: a number that every change of a definition or its status raises, so that
    workers know when to reload their workspace."""

    __tablename__ = "workspace_revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)


class SegmentMemberRow(Base):
    """PERSONAL. Who is in a segment now, since when."""

    __tablename__ = "segment_members"
    segment_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(UtcTime())
    __table_args__ = (Index("ix_segment_members_profile", "profile_id"),)


class SegmentTransitionRow(Base):
    """PERSONAL. Every entry into and exit from a segment."""

    __tablename__ = "segment_transitions"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(String(100))
    profile_id: Mapped[str] = mapped_column(String(32))
    entered: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UtcTime())
    __table_args__ = (
        Index("ix_segment_transitions_profile", "profile_id", "id"),
        Index("ix_segment_transitions_segment", "segment_id", "at"),
        {"sqlite_autoincrement": True},
    )


class SegmentSizeRow(Base):
    """A segment's size at a moment (sizes over time)."""

    __tablename__ = "segment_sizes"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UtcTime())
    size: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_segment_sizes_segment", "segment_id", "at"),)


class EnrollmentRow(Base):
    """PERSONAL. One person's passage through one journey version."""

    __tablename__ = "enrollments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    profile_id: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200), default="")
    step_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    layer: Mapped[str] = mapped_column(String(16))
    entered_at: Mapped[datetime] = mapped_column(UtcTime())
    wake_at: Mapped[datetime | None] = mapped_column(UtcTime(), nullable=True)
    context: Mapped[dict[str, Any]] = mapped_column(JsonType)
    ended_at: Mapped[datetime | None] = mapped_column(UtcTime(), nullable=True)
    exit_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    converted_at: Mapped[datetime | None] = mapped_column(UtcTime(), nullable=True)
    conversion_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (
        Index("ix_enrollments_profile", "profile_id"),
        Index("ix_enrollments_journey", "journey_id", "status"),
    )


class JourneyStatRow(Base):
    """How many people entered a journey (for entry caps)."""

    __tablename__ = "journey_stats"
    journey_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    entered: Mapped[int] = mapped_column(BigInteger, default=0)


class TimerRow(Base):
    """PERSONAL. Work due at a time: a wake-up, a re-check, an anniversary, a decision,
    a schedule. One row per (profile, kind, ref); claimed like the inbox."""

    __tablename__ = "timers"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    due_at: Mapped[datetime] = mapped_column(UtcTime())
    profile_id: Mapped[str] = mapped_column(String(32))  # "" for journey schedules
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    __table_args__ = (
        Index("ux_timers_owner", "profile_id", "kind", "ref", unique=True),
        Index("ix_timers_due", "due_at"),
        {"sqlite_autoincrement": True},
    )


class CandidateRow(Base):
    """PERSONAL. A message a journey proposed, and what the controller made of it."""

    __tablename__ = "candidates"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(32))
    enrollment_id: Mapped[str] = mapped_column(String(32))
    journey_id: Mapped[str] = mapped_column(String(100))
    step_id: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(JsonType)  # channels, content, topic, value, ...
    layer: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(
        String(16)
    )  # pending sent deferred suppressed held_out withdrawn
    reason: Mapped[str] = mapped_column(String(500), default="")
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcTime())
    expires_at: Mapped[datetime] = mapped_column(UtcTime())
    decided_at: Mapped[datetime | None] = mapped_column(UtcTime(), nullable=True)
    # The uplift trial it counts as once sent, withheld or declined: arm treated|control,
    # the person's stratum then ("" until it counts) and its weight.
    arm: Mapped[str] = mapped_column(String(8), default="")
    stratum: Mapped[str] = mapped_column(String(100), default="")
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    # When the trial's goal window has closed and it joins its cell's tally (None: not a
    # trial, or counted already).
    matures_at: Mapped[datetime | None] = mapped_column(UtcTime(), nullable=True)
    __table_args__ = (
        Index("ix_candidates_profile", "profile_id", "status"),
        Index("ix_candidates_enrollment", "enrollment_id"),
        Index("ix_candidates_matures", "matures_at"),
    )


class MessageRow(Base):
    """PERSONAL. A message handed to a channel; unique per idempotency key."""

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    profile_id: Mapped[str] = mapped_column(String(32))
    candidate_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    journey_id: Mapped[str] = mapped_column(String(100))
    step_id: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(512))
    topic: Mapped[str | None] = mapped_column(String(100), nullable=True)
    content: Mapped[str] = mapped_column(String(200))
    body: Mapped[dict[str, Any]] = mapped_column(JsonType)
    transactional: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))  # captured | pending | delivered | failed
    sent_at: Mapped[datetime] = mapped_column(UtcTime())
    __table_args__ = (
        Index("ix_messages_profile", "profile_id", "sent_at"),
        {"sqlite_autoincrement": True},
    )


class DecisionRow(Base):
    """PERSONAL. One controller decision about one person: every candidate, its rule
    results, scores and outcome (the decision log)."""

    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    profile_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcTime())
    policy: Mapped[str] = mapped_column(String(16))
    stratum: Mapped[str] = mapped_column(String(100))
    summary: Mapped[str] = mapped_column(String(500))
    record: Mapped[dict[str, Any]] = mapped_column(JsonType)
    __table_args__ = (
        Index("ix_decisions_profile", "profile_id", "at"),
        {"sqlite_autoincrement": True},
    )


class UpliftTallyRow(Base):
    """Trials and conversions per journey, arm, channel and stratum: what uplift is learned
    from. Aggregates, not about any one person."""

    __tablename__ = "uplift_tallies"
    journey_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    arm: Mapped[str] = mapped_column(String(8), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    stratum: Mapped[str] = mapped_column(String(100), primary_key=True)
    trials: Mapped[float] = mapped_column(Float, default=0.0)
    conversions: Mapped[float] = mapped_column(Float, default=0.0)
    revenue: Mapped[float] = mapped_column(Float, default=0.0)
    squares: Mapped[float] = mapped_column(Float, default=0.0)


PERSONAL_TABLES = (
    InboxRow,
    QuarantineRow,
    ProfileRow,
    IdentifierRow,
    ProfileAliasRow,
    MergeRow,
    EventRow,
    SegmentMemberRow,
    SegmentTransitionRow,
    EnrollmentRow,
    TimerRow,
    CandidateRow,
    MessageRow,
    DecisionRow,
)


def core(row: type[Base]) -> Table:
    """The Core table of a row class: bulk statements on it skip the ORM's per-row work."""
    return cast(Table, row.__table__)
