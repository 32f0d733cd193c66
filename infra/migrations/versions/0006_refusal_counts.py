"""refused safety requests counted per client and 10-second bucket; index for retention

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 19:00:00
"""

import sqlalchemy as sa
from alembic import op

import infra.ledger.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "safety_refusal_counts",
        sa.Column("client", sa.String(length=128), nullable=False),
        sa.Column("window_start", infra.ledger.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client", "window_start", name=op.f("pk_safety_refusal_counts")),
    )
    with op.batch_alter_table("safety_refusal_counts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_safety_refusal_counts_window_start"), ["window_start"], unique=False
        )
    with op.batch_alter_table("kill_switch_events", schema=None) as batch_op:
        batch_op.create_index("ix_kill_switch_events_accepted_at", ["accepted", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("kill_switch_events", schema=None) as batch_op:
        batch_op.drop_index("ix_kill_switch_events_accepted_at")
    with op.batch_alter_table("safety_refusal_counts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_safety_refusal_counts_window_start"))
    op.drop_table("safety_refusal_counts")
