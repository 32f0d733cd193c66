"""backtest runs

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 21:30:00
"""

import sqlalchemy as sa
from alembic import op

import infra.ledger.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backtest_runs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("created_at", infra.ledger.types.UtcDateTime(), nullable=False),
        sa.Column("symbols", sa.JSON(), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("start", infra.ledger.types.UtcDateTime(), nullable=False),
        sa.Column("end", infra.ledger.types.UtcDateTime(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("starting_cash", infra.ledger.types.ExactDecimal(), nullable=False),
        sa.Column("cash", infra.ledger.types.ExactDecimal(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_backtest_runs")),
        sa.UniqueConstraint("account", name=op.f("uq_backtest_runs_account")),
    )
    op.create_index(
        op.f("ix_backtest_runs_created_at"), "backtest_runs", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_backtest_runs_created_at"), table_name="backtest_runs")
    op.drop_table("backtest_runs")
