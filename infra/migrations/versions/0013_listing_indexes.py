"""indexes for the API's orders and trades lists (an account's newest first, by pages)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 07:00:00
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_account_created", "orders", ["account", "created_at", "client_order_id"]
    )
    op.create_index("ix_fills_account_filled", "fills", ["account", "filled_at", "fill_id"])


def downgrade() -> None:
    op.drop_index("ix_fills_account_filled", table_name="fills")
    op.drop_index("ix_orders_account_created", table_name="orders")
