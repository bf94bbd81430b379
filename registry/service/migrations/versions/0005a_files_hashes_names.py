"""Every file a version is served as (version_files), base model, licence, publisher and pickle scan
per version; model names unique case-insensitively within a source; the full-text index's
vocabulary (search_terms)

Versions published before this keep their canonical file and the hash of their upload (the
upload's bytes were not kept then, unless they were the canonical file itself).

Revision ID: 0005a
Revises: 0004
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

from pseudoword.registry.service import search_terms

revision = "0005a"
down_revision = "0004"
branch_labels = None
depends_on = None

def _version_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("base_model", sa.String(32), nullable=True),
        sa.Column("license", sa.String(128), nullable=True),
        sa.Column("permissions", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("publisher", sa.String(128), nullable=False, server_default=""),
        sa.Column("pickle_scan_result", sa.String(16), nullable=False, server_default="Pending"),
        sa.Column("pickle_scan_message", sa.Text(), nullable=False, server_default=""),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    clashes = bind.execute(sa.text(
        "SELECT source, lower(name) AS name, count(*) AS n FROM models GROUP BY source, lower(name) HAVING count(*) > 1"
    )).all()
    if clashes:
        names = ", ".join(f"{row.source}:{row.name} ({row.n})" for row in clashes[:10])
        raise RuntimeError(f"model names now compare case-insensitively, and these differ only in case: {names}; "
                           "rename all but one (UPDATE models SET name = ...) and start again")
    # Plain ADD COLUMN (no batch copy): SQLite keeps the tables' change triggers (0004).
    for column in _version_columns():
        op.add_column("versions", column)
    op.add_column("models", sa.Column("base_model", sa.String(32), nullable=True))
    op.create_index("ix_models_base_model", "models", ["base_model"])
    op.create_index("uq_models_source_lower_name", "models", ["source", sa.text("lower(name)")], unique=True)
    op.create_table(
        "version_files",
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(300), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("version_id", "format"),
    )
    op.create_index("ix_version_files_sha256", "version_files", ["sha256"])
    op.execute(search_terms.CREATE[bind.dialect.name])  # the full-text index's vocabulary (search_terms.py)
    search_terms.rebuild(bind)
    op.execute("INSERT INTO version_files (version_id, format, filename, sha256, size, stored) "
               "SELECT id, 'safetensors', trigger || '.safetensors', sha256, size, TRUE FROM versions")
    op.execute("INSERT INTO version_files (version_id, format, filename, sha256, size, stored) "
               "SELECT id, 'original', trigger || CASE WHEN original_format LIKE 'safetensors%' "
               "THEN '.safetensors' ELSE '.pt' END, original_sha256, original_size, original_sha256 = sha256 "
               "FROM versions")


def downgrade() -> None:
    op.execute("DROP TABLE search_terms")
    op.drop_index("ix_version_files_sha256", "version_files")
    op.drop_table("version_files")
    op.drop_index("uq_models_source_lower_name", "models")
    op.drop_index("ix_models_base_model", "models")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("base_model")
    with op.batch_alter_table("versions") as batch:
        for column in reversed(_version_columns()):
            batch.drop_column(column.name)
