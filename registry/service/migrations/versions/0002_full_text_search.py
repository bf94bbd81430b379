"""full-text search index: FTS5 on SQLite, a tsvector column with a GIN index on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE models ADD COLUMN search_vector tsvector")
        op.execute("CREATE INDEX ix_models_search_vector ON models USING GIN (search_vector)")
    else:
        # rowid = models.id; the service writes a row whenever a model's latest version changes.
        op.execute(
            "CREATE VIRTUAL TABLE model_search USING fts5("
            "name, title, description, tags, trigger, tokenize = 'unicode61')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_models_search_vector")
        op.execute("ALTER TABLE models DROP COLUMN search_vector")
    else:
        op.execute("DROP TABLE model_search")
