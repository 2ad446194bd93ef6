"""initial schema

Revision ID: 0001
Revises: 
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('experiments',
    sa.Column('experiment_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('artifact_location', sa.String(length=1000), nullable=False),
    sa.Column('lifecycle_stage', sa.String(length=32), nullable=False),
    sa.Column('creation_time', sa.BigInteger(), nullable=False),
    sa.Column('last_update_time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('experiment_id', name=op.f('pk_experiments')),
    sa.UniqueConstraint('name', name=op.f('uq_experiments_name'))
    )
    op.create_table('run_input_tags',
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('dataset_uuid', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.String(length=500), nullable=False),
    sa.PrimaryKeyConstraint('run_uuid', 'dataset_uuid', 'key', name=op.f('pk_run_input_tags'))
    )
    op.create_table('datasets',
    sa.Column('dataset_uuid', sa.String(length=32), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.Column('digest', sa.String(length=36), nullable=False),
    sa.Column('source_type', sa.String(length=36), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('schema', sa.Text(), nullable=True),
    sa.Column('profile', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.experiment_id'], name=op.f('fk_datasets_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('dataset_uuid', name=op.f('pk_datasets')),
    sa.UniqueConstraint('experiment_id', 'name', 'digest', name=op.f('uq_datasets_experiment_id_name_digest'))
    )
    op.create_table('experiment_tags',
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.experiment_id'], name=op.f('fk_experiment_tags_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('experiment_id', 'key', name=op.f('pk_experiment_tags'))
    )
    op.create_table('runs',
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=250), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('start_time', sa.BigInteger(), nullable=False),
    sa.Column('end_time', sa.BigInteger(), nullable=True),
    sa.Column('deleted_time', sa.BigInteger(), nullable=True),
    sa.Column('lifecycle_stage', sa.String(length=20), nullable=False),
    sa.Column('artifact_uri', sa.String(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.experiment_id'], name=op.f('fk_runs_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_uuid', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_experiment_start', ['experiment_id', 'start_time', 'run_uuid'], unique=False)
        batch_op.create_index('ix_runs_start', ['start_time', 'run_uuid'], unique=False)

    op.create_table('ingest_batches',
    sa.Column('batch_id', sa.String(length=64), nullable=False),
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('created_time', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_uuid'], ['runs.run_uuid'], name=op.f('fk_ingest_batches_run_uuid_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('batch_id', name=op.f('pk_ingest_batches'))
    )
    op.create_table('latest_metrics',
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Float(precision=53), nullable=False),
    sa.Column('is_nan', sa.Boolean(), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_uuid'], ['runs.run_uuid'], name=op.f('fk_latest_metrics_run_uuid_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_uuid', 'key', name=op.f('pk_latest_metrics'))
    )
    with op.batch_alter_table('latest_metrics', schema=None) as batch_op:
        batch_op.create_index('ix_latest_metrics_key_value', ['key', 'value'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        # Covering: reading the latest metrics of many runs becomes an index-only scan.
        op.create_index('ix_latest_metrics_run_cover', 'latest_metrics', ['run_uuid', 'key'],
                        postgresql_include=['value', 'is_nan', 'timestamp', 'step'])

    op.create_table('metric_chunks',
    sa.Column('chunk_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('step_data', sa.LargeBinary(), nullable=False),
    sa.Column('timestamp_data', sa.LargeBinary(), nullable=False),
    sa.Column('value_data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['run_uuid'], ['runs.run_uuid'], name=op.f('fk_metric_chunks_run_uuid_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('chunk_id', name=op.f('pk_metric_chunks'))
    )
    with op.batch_alter_table('metric_chunks', schema=None) as batch_op:
        batch_op.create_index('ix_metric_chunks_run_key', ['run_uuid', 'key', 'chunk_id'], unique=False)

    op.create_table('params',
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_uuid'], ['runs.run_uuid'], name=op.f('fk_params_run_uuid_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_uuid', 'key', name=op.f('pk_params'))
    )
    op.create_index('ix_params_key_value', 'params', ['key', sa.text('substr(value, 1, 200)')], unique=False)
    op.create_table('run_inputs',
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('dataset_uuid', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['dataset_uuid'], ['datasets.dataset_uuid'], name=op.f('fk_run_inputs_dataset_uuid_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_uuid'], ['runs.run_uuid'], name=op.f('fk_run_inputs_run_uuid_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_uuid', 'dataset_uuid', name=op.f('pk_run_inputs'))
    )
    op.create_table('tags',
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_uuid'], ['runs.run_uuid'], name=op.f('fk_tags_run_uuid_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_uuid', 'key', name=op.f('pk_tags'))
    )
    op.create_index('ix_tags_key_value', 'tags', ['key', sa.text('substr(value, 1, 200)')], unique=False)


def downgrade() -> None:
    op.drop_index('ix_params_key_value', table_name='params')
    op.drop_index('ix_tags_key_value', table_name='tags')
    op.drop_table('tags')
    op.drop_table('run_inputs')
    op.drop_table('params')
    with op.batch_alter_table('metric_chunks', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_chunks_run_key')

    op.drop_table('metric_chunks')
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_latest_metrics_run_cover', table_name='latest_metrics')
    with op.batch_alter_table('latest_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_latest_metrics_key_value')

    op.drop_table('latest_metrics')
    op.drop_table('ingest_batches')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_start')
        batch_op.drop_index('ix_runs_experiment_start')

    op.drop_table('runs')
    op.drop_table('experiment_tags')
    op.drop_table('datasets')
    op.drop_table('run_input_tags')
    op.drop_table('experiments')
