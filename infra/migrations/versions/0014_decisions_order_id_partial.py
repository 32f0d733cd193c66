"""decisions' client order ids unique where set: a partial unique index, not a constraint

Most decisions propose no order (a backtest's holds: hundreds of thousands a run), and a
unique constraint indexes their NULLs too: one more index to insert each of them into, a tenth
of a decision's insert on SQLite. The partial index keeps every set id unique, as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 03:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

NAME = "uq_decisions_client_order_id"
SET = sa.text("client_order_id IS NOT NULL")


def upgrade() -> None:
    # SQLite keeps a table's constraints in its CREATE TABLE: the table is rebuilt without it.
    with op.batch_alter_table("decisions") as batch:
        batch.drop_constraint(NAME, type_="unique")
    op.create_index(
        NAME, "decisions", ["client_order_id"], unique=True, sqlite_where=SET, postgresql_where=SET
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.create_unique_constraint(NAME, ["client_order_id"])
