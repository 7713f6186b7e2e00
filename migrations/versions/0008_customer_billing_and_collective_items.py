"""customer billing profile and collective invoice items

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 10:10:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('collective_item',
    sa.Column('order_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
    sa.Column('shipped_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('basis', sa.Text(), nullable=False),
    sa.Column('document_id', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ),
    sa.PrimaryKeyConstraint('order_id')
    )
    with op.batch_alter_table('collective_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collective_item_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collective_item_document_id'), ['document_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collective_item_period'), ['period'], unique=False)

    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('collective_invoice', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('einvoice', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('buyer_reference', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('payment_term_days', sa.Integer(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_column('payment_term_days')
        batch_op.drop_column('buyer_reference')
        batch_op.drop_column('einvoice')
        batch_op.drop_column('collective_invoice')

    with op.batch_alter_table('collective_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collective_item_period'))
        batch_op.drop_index(batch_op.f('ix_collective_item_document_id'))
        batch_op.drop_index(batch_op.f('ix_collective_item_customer_id'))

    op.drop_table('collective_item')
