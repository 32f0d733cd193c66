"""drift checks

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 00:30:00
"""

import sqlalchemy as sa
from alembic import op

import infra.ledger.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("checked_at", infra.ledger.types.UtcDateTime(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("reference_start", infra.ledger.types.UtcDateTime(), nullable=False),
        sa.Column("reference_end", infra.ledger.types.UtcDateTime(), nullable=False),
        sa.Column("current_start", infra.ledger.types.UtcDateTime(), nullable=False),
        sa.Column("current_end", infra.ledger.types.UtcDateTime(), nullable=False),
        sa.Column("reference_rows", sa.Integer(), nullable=False),
        sa.Column("current_rows", sa.Integer(), nullable=False),
        sa.Column("share_drifted", sa.Float(), nullable=False),
        sa.Column("dataset_drift", sa.Boolean(), nullable=False),
        sa.Column("prediction_drift", sa.Boolean(), nullable=False),
        sa.Column("prediction_score", sa.Float(), nullable=True),
        sa.Column("drifted_columns", sa.JSON(), nullable=False),
        sa.Column("matured_rows", sa.Integer(), nullable=False),
        sa.Column("auc_current", sa.Float(), nullable=True),
        sa.Column("auc_reference", sa.Float(), nullable=True),
        sa.Column("retrain_triggered", sa.Boolean(), nullable=False),
        sa.Column("flow_run_id", sa.Text(), nullable=True),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("target_rate_current", sa.Float(), nullable=True),
        sa.Column("target_rate_reference", sa.Float(), nullable=True),
        sa.Column("target_drift", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_checks")),
    )
    op.create_index(
        "ix_drift_checks_model_checked",
        "drift_checks",
        ["model_name", "checked_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_drift_checks_model_checked", table_name="drift_checks")
    op.drop_table("drift_checks")
