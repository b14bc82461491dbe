"""Prometheus metrics shared by the API and the worker (served at `/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_ACCEPTED = Counter("airspace_events_accepted_total", "Events queued by the tracking API")
EVENTS_DUPLICATE = Counter(
    "airspace_events_duplicate_total", "Events skipped because their messageId was seen"
)
EVENTS_QUARANTINED = Counter(
    "airspace_events_quarantined_total", "Events refused and kept in the quarantine", ["stage"]
)
EVENTS_APPLIED = Counter("airspace_events_applied_total", "Events applied to profiles")
EVENTS_DROPPED_ERASED = Counter(
    "airspace_events_dropped_erased_total", "Events dropped because they name an erased person"
)
PROFILES_MERGED = Counter("airspace_profiles_merged_total", "Profiles merged into another")
REQUESTS_RATE_LIMITED = Counter(
    "airspace_requests_rate_limited_total", "Tracking requests answered 429"
)
BATCH_SECONDS = Histogram(
    "airspace_worker_batch_seconds", "Time to apply one inbox batch, commit included"
)
TIMERS_FIRED = Counter("airspace_timers_fired_total", "Timers carried out by workers")
ENROLLMENTS = Counter("airspace_enrollments_total", "People who entered a journey")
MESSAGES_SENT = Counter("airspace_messages_sent_total", "Messages the controller sent")
