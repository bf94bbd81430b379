"""PostgreSQL: NOTIFY pseudoword_catalogue whenever versions or models change (resolve caches listen)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLES = ("versions", "models")


def upgrade() -> None:
    # SQLite needs nothing: its replicas see changes through PRAGMA data_version.
    if op.get_bind().dialect.name != "postgresql":
        return
    # One notification per transaction: PostgreSQL folds identical ones and sends them on commit.
    op.execute(
        "CREATE FUNCTION pseudoword_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('pseudoword_catalogue', ''); RETURN NULL; END $$"
    )
    for table in _TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_notify_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION pseudoword_notify_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"DROP TRIGGER {table}_notify_change ON {table}")
    op.execute("DROP FUNCTION pseudoword_notify_change()")
