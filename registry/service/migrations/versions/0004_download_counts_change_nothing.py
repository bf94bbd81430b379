"""Download counters no longer count as catalogue changes (resolve caches keep their entries)

PostgreSQL: the NOTIFY trigger on UPDATE fires for rows whose download counter did not move
(every other change leaves it alone, and the counter's own updates touch nothing else).
SQLite: ``catalogue_generation`` moves with every change but a counter's, by the same rule;
resolve caches read it when ``PRAGMA data_version`` says something was committed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLES = ("versions", "models")
_SQLITE_BUMP = "UPDATE catalogue_generation SET value = value + 1 WHERE id = 1;"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            op.execute(f"DROP TRIGGER {table}_notify_change ON {table}")
            op.execute(
                f"CREATE TRIGGER {table}_notify_change AFTER INSERT OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION pseudoword_notify_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_notify_update AFTER UPDATE ON {table} FOR EACH ROW "
                "WHEN (OLD.downloads IS NOT DISTINCT FROM NEW.downloads) EXECUTE FUNCTION pseudoword_notify_change()"
            )
        return
    op.execute("CREATE TABLE catalogue_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)")
    op.execute("INSERT INTO catalogue_generation (id, value) VALUES (1, 0)")
    for table in _TABLES:
        op.execute(f"CREATE TRIGGER {table}_insert_changes AFTER INSERT ON {table} BEGIN {_SQLITE_BUMP} END")
        op.execute(f"CREATE TRIGGER {table}_delete_changes AFTER DELETE ON {table} BEGIN {_SQLITE_BUMP} END")
        op.execute(f"CREATE TRIGGER {table}_update_changes AFTER UPDATE ON {table} "
                   f"WHEN OLD.downloads IS NEW.downloads BEGIN {_SQLITE_BUMP} END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            op.execute(f"DROP TRIGGER {table}_notify_update ON {table}")
            op.execute(f"DROP TRIGGER {table}_notify_change ON {table}")
            op.execute(
                f"CREATE TRIGGER {table}_notify_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION pseudoword_notify_change()"
            )
        return
    for table in _TABLES:
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER {table}_{event}_changes")
    op.execute("DROP TABLE catalogue_generation")
