"""The one place that turns settings into concrete parts: database, clock, rules, worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from airspace.domain.clock import Clock, SystemClock
from airspace.domain.identity import DEFAULT_LIMITS, IdentityRules
from airspace.engine.worker import Worker, WorkerConfig
from airspace.settings import Settings
from airspace.store.database import Database
from airspace.store.keys import KeyCache


@dataclass
class Services:
    """What the API and the CLI share within one process."""

    settings: Settings
    db: Database
    clock: Clock
    rules: IdentityRules = field(default_factory=IdentityRules)
    keys: KeyCache = field(init=False)

    def __post_init__(self) -> None:
        self.keys = KeyCache(self.db)

    @property
    def secret(self) -> bytes:
        """The key of the erasure hashes."""
        return self.settings.secret.encode()

    def worker(self, *, paced: bool = True) -> Worker:
        """A worker configured from the settings; `paced=False` sizes its batches by count
        alone, not by how long the last ones took (the simulator: runs that repeat)."""
        return Worker(
            self.db,
            self.clock,
            WorkerConfig(
                rules=self.rules,
                secret=self.secret,
                batch_size=self.settings.worker_batch_size,
                idle_seconds=self.settings.worker_idle_seconds,
                batch_seconds=self.settings.worker_batch_seconds if paced else None,
                dedupe_retention=timedelta(days=self.settings.dedupe_retention_days),
                decision_retention=timedelta(days=self.settings.decision_log_retention_days),
            ),
        )


def build_services(settings: Settings | None = None, clock: Clock | None = None) -> Services:
    """Services for these settings (read from the environment when not given)."""
    settings = settings or Settings()
    limits = {**DEFAULT_LIMITS, **settings.identifier_limits}
    return Services(
        settings=settings,
        db=Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous),
        clock=clock or SystemClock(),
        rules=IdentityRules(limits=limits, phone_region=settings.phone_region),
    )
