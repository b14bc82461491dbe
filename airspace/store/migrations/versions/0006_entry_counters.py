"""journey entry counters only for journeys with an entry cap

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 14:30:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """From this revision on only journeys with an entry cap keep a counter, started from
    their stored enrollments when first needed. The old counters of every journey are
    dropped so that none goes stale: a journey without a cap no longer counts, and would
    start wrong if it gained one later."""
    op.execute("DELETE FROM journey_stats")


def downgrade() -> None:
    """The counters of the journeys without a cap are not rebuilt: an older version counts
    them from zero on."""
