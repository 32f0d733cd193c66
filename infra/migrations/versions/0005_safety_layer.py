"""safety layer: orders without a decision (origin), cooldowns, safety events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 06:40:00
"""

import sqlalchemy as sa
from alembic import op

import infra.ledger.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("origin", sa.String(length=16), server_default="decision", nullable=False)
        )
        batch_op.alter_column("decision_id", existing_type=sa.String(length=128), nullable=True)
    with op.batch_alter_table("safety_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("until", infra.ledger.types.UtcDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "safety_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", infra.ledger.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("control", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_events")),
    )
    with op.batch_alter_table("safety_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_safety_events_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("safety_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_safety_events_at"))
    op.drop_table("safety_events")
    with op.batch_alter_table("safety_state", schema=None) as batch_op:
        batch_op.drop_column("until")
    op.execute("DELETE FROM orders WHERE decision_id IS NULL")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.alter_column("decision_id", existing_type=sa.String(length=128), nullable=False)
        batch_op.drop_column("origin")
