"""a number every change of a definition raises, for the workers' workspace cache

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The workers' cache key was (row count, latest change), which missed a pause or an
    archive made at the same instant as the change before it."""
    table = op.create_table(
        "workspace_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "revision": 0}])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("workspace_revision")
