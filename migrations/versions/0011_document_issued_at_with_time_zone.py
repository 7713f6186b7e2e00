"""document.issued_at as a timestamp with time zone, like every other moment

Migration 0006 added the column without a time zone. On PostgreSQL the driver sends an
aware moment, which the server turned into its session time zone's wall clock; read back,
that wall clock was taken for UTC, so a server not running on UTC shifted the issue time
(and a retried render printed another date). The values are converted with the time zone
they were written in. SQLite keeps moments as text either way: nothing to do there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 21:40:00
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0011'
down_revision: Union[str, None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE document ALTER COLUMN issued_at TYPE TIMESTAMP WITH TIME ZONE "
                   "USING issued_at AT TIME ZONE current_setting('TimeZone')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE document ALTER COLUMN issued_at TYPE TIMESTAMP WITHOUT TIME "
                   "ZONE USING issued_at AT TIME ZONE current_setting('TimeZone')")
