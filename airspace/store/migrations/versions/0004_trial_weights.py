"""uplift trials carry weights (inverse propensity)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 08:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A candidate's trial weight; a cell's sum of squared weights."""
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weight", sa.Float(), nullable=False, server_default="1"))
    with op.batch_alter_table("uplift_tallies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("squares", sa.Float(), nullable=False, server_default="0"))
    # Every trial so far weighed 1.
    op.execute("UPDATE uplift_tallies SET squares = trials")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("uplift_tallies", schema=None) as batch_op:
        batch_op.drop_column("squares")
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.drop_column("weight")
