"""uplift trials join their cells once their goal window has closed

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 20:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """When each trial matures. Trials counted before this revision stay counted (their
    later conversions are no longer added: the cells of the last goal window undercount
    conversions, once)."""
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("matures_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_candidates_matures", ["matures_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.drop_index("ix_candidates_matures")
        batch_op.drop_column("matures_at")
