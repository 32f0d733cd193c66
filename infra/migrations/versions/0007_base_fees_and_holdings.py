"""fees taken in the base asset; holdings an exchange account had before the first start, and
when that was

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 20:00:00
"""

import sqlalchemy as sa
from alembic import op

import infra.ledger.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fee_in_base", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("opened_at", infra.ledger.types.UtcDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "account_holdings",
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=32), nullable=False),
        sa.Column("quantity", infra.ledger.types.ExactDecimal(), nullable=False),
        sa.Column("recorded_at", infra.ledger.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "asset", name=op.f("pk_account_holdings")),
    )


def downgrade() -> None:
    op.drop_table("account_holdings")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("opened_at")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_column("fee_in_base")
