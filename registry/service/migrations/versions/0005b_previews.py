"""Preview images of versions (the checked upload and its thumbnail, blobs by digest)

Revision ID: 0005b
Revises: 0005a
Create Date: 2026-12-02
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005b"
down_revision = "0005a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "previews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("thumb_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("thumb_size", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id", "sha256", name="uq_previews_version_sha256"),
    )
    with op.batch_alter_table("previews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_previews_version_id"), ["version_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_previews_sha256"), ["sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_previews_thumb_sha256"), ["thumb_sha256"], unique=False)


def downgrade() -> None:
    op.drop_table("previews")
