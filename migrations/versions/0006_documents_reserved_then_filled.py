"""numbered documents: reserved with their number first, filled with content afterwards

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 06:40:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('document', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issued_at', sa.DateTime(), nullable=True))
        batch_op.alter_column('content', existing_type=sa.LargeBinary(), nullable=True)
        batch_op.alter_column('sha256', existing_type=sa.String(), nullable=True)
    # Documents issued before this revision were numbered and stored in one step.
    op.execute("UPDATE document SET issued_at = created_at WHERE number IS NOT NULL")


def downgrade() -> None:
    # Fails (NOT NULL) while a reserved, not yet filled document exists: finish it first.
    with op.batch_alter_table('document', schema=None) as batch_op:
        batch_op.alter_column('sha256', existing_type=sa.String(), nullable=False)
        batch_op.alter_column('content', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('issued_at')
