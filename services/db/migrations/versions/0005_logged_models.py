"""logged models (MLflow 3): models with their tags, params and metrics, run outputs and model inputs

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

ModelId = sa.String(length=34)


def upgrade() -> None:
    op.create_table('logged_models',
    sa.Column('model_id', ModelId, nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=250), nullable=False),
    sa.Column('source_run_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('status_message', sa.Text(), nullable=False),
    sa.Column('model_type', sa.String(length=500), nullable=False),
    sa.Column('artifact_location', sa.String(length=1000), nullable=False),
    sa.Column('lifecycle_stage', sa.String(length=20), nullable=False),
    sa.Column('creation_time', sa.BigInteger(), nullable=False),
    sa.Column('last_updated_time', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.experiment_id'], name=op.f('fk_logged_models_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', name=op.f('pk_logged_models'))
    )
    op.create_index('ix_logged_models_experiment_creation', 'logged_models', ['experiment_id', 'creation_time'], unique=False)
    for table in ('logged_model_tags', 'logged_model_params'):
        op.create_table(table,
        sa.Column('model_id', ModelId, nullable=False),
        sa.Column('key', sa.String(length=250), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['model_id'], ['logged_models.model_id'], name=op.f(f'fk_{table}_model_id_logged_models'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('model_id', 'key', name=op.f(f'pk_{table}'))
        )
    op.create_table('logged_model_metrics',
    sa.Column('model_id', ModelId, nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('dataset_name', sa.String(length=500), nullable=False),
    sa.Column('dataset_digest', sa.String(length=36), nullable=False),
    sa.Column('value', sa.Float(precision=53), nullable=False),
    sa.Column('is_nan', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['logged_models.model_id'], name=op.f('fk_logged_model_metrics_model_id_logged_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'key', 'step', 'timestamp', 'run_id', 'dataset_name', 'dataset_digest', name=op.f('pk_logged_model_metrics'))
    )
    op.create_table('run_outputs',
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('model_id', ModelId, nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_uuid'], ['runs.run_uuid'], name=op.f('fk_run_outputs_run_uuid_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['logged_models.model_id'], name=op.f('fk_run_outputs_model_id_logged_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_uuid', 'model_id', name=op.f('pk_run_outputs'))
    )
    op.create_table('run_model_inputs',
    sa.Column('run_uuid', sa.String(length=32), nullable=False),
    sa.Column('model_id', ModelId, nullable=False),
    sa.ForeignKeyConstraint(['run_uuid'], ['runs.run_uuid'], name=op.f('fk_run_model_inputs_run_uuid_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['logged_models.model_id'], name=op.f('fk_run_model_inputs_model_id_logged_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_uuid', 'model_id', name=op.f('pk_run_model_inputs'))
    )
    op.add_column('model_versions', sa.Column('logged_model_id', ModelId, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.drop_column('logged_model_id')
    for table in ('run_model_inputs', 'run_outputs', 'logged_model_metrics', 'logged_model_params',
                  'logged_model_tags', 'logged_models'):
        op.drop_table(table)
