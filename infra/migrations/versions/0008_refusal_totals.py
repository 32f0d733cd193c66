"""everyone's refused safety requests per 10 seconds and per hour (what the status reads)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 20:30:00
"""

import sqlalchemy as sa
from alembic import op

import infra.ledger.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "safety_refusal_totals",
        sa.Column("granularity", sa.String(length=4), nullable=False),
        sa.Column("window_start", infra.ledger.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "granularity", "window_start", name=op.f("pk_safety_refusal_totals")
        ),
    )


def downgrade() -> None:
    op.drop_table("safety_refusal_totals")
