"""agent calls, decision provenance and consensus contributions

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 03:00:00
"""

import sqlalchemy as sa
from alembic import op

import infra.ledger.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("contributions", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("regime", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("provenance", sa.JSON(), nullable=True))
    op.create_table(
        "agent_calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("decision_id", sa.String(length=128), nullable=False),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("template", sa.String(length=128), nullable=False),
        sa.Column("template_version", sa.String(length=64), nullable=False),
        sa.Column("prompt_hash", sa.String(length=64), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("vote", sa.JSON(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cost", infra.ledger.types.ExactDecimal(), nullable=False),
        sa.Column("finish_reason", sa.String(length=32), nullable=False),
        sa.Column("called_at", infra.ledger.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.decision_id"],
            name=op.f("fk_agent_calls_decision_id_decisions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_calls")),
        sa.UniqueConstraint("decision_id", "agent", "round", name="uq_agent_calls_turn"),
    )
    op.create_index("ix_agent_calls_cache", "agent_calls", ["model", "prompt_hash"])
    op.create_index("ix_agent_calls_called_at", "agent_calls", ["called_at"])


def downgrade() -> None:
    op.drop_index("ix_agent_calls_called_at", table_name="agent_calls")
    op.drop_index("ix_agent_calls_cache", table_name="agent_calls")
    op.drop_table("agent_calls")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("provenance")
        batch.drop_column("regime")
        batch.drop_column("contributions")
