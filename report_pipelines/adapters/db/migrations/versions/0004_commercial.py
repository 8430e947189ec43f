"""commercial: products, policies, proposals, client products

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from report_pipelines.adapters.db.types import ExactDecimal, UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('commercial_policies',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', ExactDecimal(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('products', sa.Text(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('min_quantity', sa.Integer(), nullable=True),
    sa.Column('max_uses', sa.Integer(), nullable=True),
    sa.Column('max_uses_per_client', sa.Integer(), nullable=True),
    sa.Column('stackable', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_commercial_policies'))
    )
    op.create_table('products',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('list_price', ExactDecimal(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_products'))
    )
    op.create_table('proposals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('prospect_name', sa.String(length=200), nullable=True),
    sa.Column('prospect_email', sa.String(length=320), nullable=True),
    sa.Column('prospect_slug', sa.String(length=64), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('term_days', sa.Integer(), nullable=True),
    sa.Column('requested_policy', sa.String(length=32), nullable=True),
    sa.Column('applied_policies', sa.Text(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('subtotal', ExactDecimal(), nullable=False),
    sa.Column('discount', ExactDecimal(), nullable=False),
    sa.Column('total', ExactDecimal(), nullable=False),
    sa.Column('priced_on', sa.Date(), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('applied_at', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'submitted', 'approved', 'rejected', 'expired')", name=op.f('ck_proposals_status')),
    sa.CheckConstraint('(client_id IS NOT NULL) OR (prospect_email IS NOT NULL AND prospect_slug IS NOT NULL)', name=op.f('ck_proposals_customer')),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_proposals_client_id_clients'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proposals')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('proposals', schema=None) as batch_op:
        batch_op.create_index('ix_proposals_to_apply', ['status', 'applied_at'], unique=False)

    op.create_table('client_products',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('product_code', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', ExactDecimal(), nullable=False),
    sa.Column('discount', ExactDecimal(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('trial', sa.Boolean(), nullable=False),
    sa.Column('source_proposal', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_client_products_client_id_clients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['product_code'], ['products.code'], name=op.f('fk_client_products_product_code_products'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['source_proposal'], ['proposals.id'], name=op.f('fk_client_products_source_proposal_proposals'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_client_products')),
    sa.UniqueConstraint('source_proposal', 'product_code', name='uq_client_products_source'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('client_products', schema=None) as batch_op:
        batch_op.create_index('ix_client_products_client', ['client_id', 'product_code'], unique=False)

    op.create_table('policy_uses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('policy_code', sa.String(length=32), nullable=False),
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('client_key', sa.String(length=400), nullable=False),
    sa.Column('used_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['policy_code'], ['commercial_policies.code'], name=op.f('fk_policy_uses_policy_code_commercial_policies'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposals.id'], name=op.f('fk_policy_uses_proposal_id_proposals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_uses')),
    sa.UniqueConstraint('policy_code', 'proposal_id', name='uq_policy_uses_proposal')
    )
    op.create_table('proposal_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('product_code', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', ExactDecimal(), nullable=False),
    sa.Column('list_total', ExactDecimal(), nullable=False),
    sa.Column('discount', ExactDecimal(), nullable=False),
    sa.Column('line_total', ExactDecimal(), nullable=False),
    sa.Column('applied', sa.Text(), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['product_code'], ['products.code'], name=op.f('fk_proposal_items_product_code_products'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposals.id'], name=op.f('fk_proposal_items_proposal_id_proposals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proposal_items')),
    sa.UniqueConstraint('proposal_id', 'product_code', name='uq_proposal_items_product')
    )
    op.create_table('proposal_transitions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('by', sa.String(length=200), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposals.id'], name=op.f('fk_proposal_transitions_proposal_id_proposals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proposal_transitions'))
    )


def downgrade() -> None:
    op.drop_table('proposal_transitions')
    op.drop_table('proposal_items')
    op.drop_table('policy_uses')
    with op.batch_alter_table('client_products', schema=None) as batch_op:
        batch_op.drop_index('ix_client_products_client')

    op.drop_table('client_products')
    with op.batch_alter_table('proposals', schema=None) as batch_op:
        batch_op.drop_index('ix_proposals_to_apply')

    op.drop_table('proposals')
    op.drop_table('products')
    op.drop_table('commercial_policies')
