"""order lifecycle: limit price, filled quantity and cost on orders

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 06:20:00
"""

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

import infra.ledger.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("limit_price", infra.ledger.types.ExactDecimal(), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "filled_quantity",
                infra.ledger.types.ExactDecimal(),
                nullable=False,
                server_default="0",
            )
        )
        batch_op.add_column(
            sa.Column(
                "filled_cost", infra.ledger.types.ExactDecimal(), nullable=False, server_default="0"
            )
        )
    # Orders filled before this revision were filled whole by their fills; the sums are made
    # in Decimal here, since SQLite would multiply the stored text as floats.
    bind = op.get_bind()
    fills = sa.table(
        "fills",
        sa.column("client_order_id", sa.String),
        sa.column("quantity", infra.ledger.types.ExactDecimal()),
        sa.column("price", infra.ledger.types.ExactDecimal()),
    )
    orders = sa.table(
        "orders",
        sa.column("client_order_id", sa.String),
        sa.column("filled_quantity", infra.ledger.types.ExactDecimal()),
        sa.column("filled_cost", infra.ledger.types.ExactDecimal()),
    )
    totals: dict[str, tuple[Decimal, Decimal]] = {}
    for coid, qty, price in bind.execute(
        sa.select(fills.c.client_order_id, fills.c.quantity, fills.c.price)
    ):
        q, c = totals.get(coid, (Decimal(0), Decimal(0)))
        totals[coid] = (q + qty, c + qty * price)
    for coid, (qty, cost) in totals.items():
        bind.execute(
            sa.update(orders)
            .where(orders.c.client_order_id == coid)
            .values(filled_quantity=qty, filled_cost=cost)
        )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35 has it): no need to copy the whole table.
    for column in ("filled_cost", "filled_quantity", "limit_price"):
        op.drop_column("orders", column)
