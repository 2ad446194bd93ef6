"""model followers: serving replicas' leases on the registered models they serve

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('registered_model_followers',
    sa.Column('model_id', AutoId, nullable=False),
    sa.Column('follower', sa.String(length=256), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.model_id'], name=op.f('fk_registered_model_followers_model_id_registered_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'follower', name=op.f('pk_registered_model_followers'))
    )


def downgrade() -> None:
    op.drop_table('registered_model_followers')
