"""params, tags and latest metrics keep their RunData encoding

Revision ID: 0002
Revises: 0001
"""
import math

import sqlalchemy as sa
from alembic import op

from services.db import run_data_fields

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

BATCH = 10_000


def _encode_params(run_uuid, key, value):
    return run_data_fields.param(key, value)


def _encode_tags(run_uuid, key, value):
    return run_data_fields.tag(key, value)


def _encode_latest_metrics(run_uuid, key, value, is_nan, timestamp, step):
    return run_data_fields.metric(key, math.nan if is_nan else value, timestamp, step)


COLUMNS = {
    'params': ('value', _encode_params),
    'tags': ('value', _encode_tags),
    'latest_metrics': ('value, is_nan, timestamp, step', _encode_latest_metrics),
}


def _write_encoded(bind, table: str, rows, encoded: list[bytes]) -> None:
    if bind.dialect.name == 'postgresql':  # one statement per batch rather than per row
        bind.execute(sa.text(
            f"UPDATE {table} AS t SET encoded = u.encoded FROM unnest("
            "CAST(:run_uuids AS text[]), CAST(:keys AS text[]), CAST(:encoded AS bytea[])) AS u(run_uuid, key, encoded) "
            "WHERE t.run_uuid = u.run_uuid AND t.key = u.key"
        ), {'run_uuids': [r[0] for r in rows], 'keys': [r[1] for r in rows], 'encoded': encoded})
        return
    bind.execute(
        sa.text(f"UPDATE {table} SET encoded = :encoded WHERE run_uuid = :run_uuid AND key = :key"),
        [{'run_uuid': r[0], 'key': r[1], 'encoded': e} for r, e in zip(rows, encoded)],
    )


def upgrade() -> None:
    bind = op.get_bind()
    empty = sa.text("''::bytea") if bind.dialect.name == 'postgresql' else sa.text("x''")
    for table, (columns, encode) in COLUMNS.items():
        op.add_column(table, sa.Column('encoded', sa.LargeBinary(), nullable=False, server_default=empty))
        # Backfill in keyset-paged batches, so a large table is never held in memory at once.
        last = ('', '')
        while True:
            rows = bind.execute(sa.text(
                f"SELECT run_uuid, key, {columns} FROM {table} WHERE (run_uuid, key) > (:run_uuid, :key) "
                f"ORDER BY run_uuid, key LIMIT {BATCH}"
            ), {'run_uuid': last[0], 'key': last[1]}).all()
            if not rows:
                break
            _write_encoded(bind, table, rows, [encode(*r) for r in rows])
            last = (rows[-1][0], rows[-1][1])
        if bind.dialect.name == 'postgresql':
            # Without a default, a write that forgets the encoding fails instead of hiding the row from reads.
            op.alter_column(table, 'encoded', server_default=None)
    if bind.dialect.name == 'postgresql':
        # Reading the latest metrics of many runs stays an index-only scan; search needs value and is_nan.
        op.drop_index('ix_latest_metrics_run_cover', table_name='latest_metrics')
        op.create_index('ix_latest_metrics_run_cover', 'latest_metrics', ['run_uuid', 'key'],
                        postgresql_include=['value', 'is_nan', 'encoded'])


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_latest_metrics_run_cover', table_name='latest_metrics')
        op.create_index('ix_latest_metrics_run_cover', 'latest_metrics', ['run_uuid', 'key'],
                        postgresql_include=['value', 'is_nan', 'timestamp', 'step'])
    for table in COLUMNS:
        op.drop_column(table, 'encoded')
