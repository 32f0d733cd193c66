"""order-book levels, public trades, decisions.order_book_features

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 06:05:00
"""

import sqlalchemy as sa
from alembic import op

import infra.ledger.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_book_levels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("taken_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("side", sa.String(length=3), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("price", infra.ledger.types.ExactDecimal(), nullable=False),
        sa.Column("amount", infra.ledger.types.ExactDecimal(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_book_levels")),
        sa.UniqueConstraint(
            "exchange", "symbol", "taken_at_ms", "side", "level", name="uq_order_book_levels_key"
        ),
    )
    op.create_table(
        "public_trades",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.Column("traded_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("price", infra.ledger.types.ExactDecimal(), nullable=False),
        sa.Column("amount", infra.ledger.types.ExactDecimal(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_public_trades")),
        sa.UniqueConstraint("exchange", "symbol", "trade_id", name="uq_public_trades_key"),
    )
    with op.batch_alter_table("public_trades", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_public_trades_traded_at_ms"), ["traded_at_ms"], unique=False
        )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_book_features", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_column("order_book_features")
    with op.batch_alter_table("public_trades", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_public_trades_traded_at_ms"))
    op.drop_table("public_trades")
    op.drop_table("order_book_levels")
