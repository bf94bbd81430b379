"""Migration 0005a on a catalogue that already holds versions: their canonical file and the hash of
their upload become version files (so by-hash still finds them), and names that differ only in case
stop the migration with a message naming them (nothing changed). Both backends."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlmodel import Session

from pseudoword.registry.core import parse_ref
from pseudoword.registry.service.db import MIGRATIONS, make_engine, migrate, migration_lock
from pseudoword.registry.service.search import search_hash

_SHA_A, _SHA_B = "a" * 64, "b" * 64


def upgrade_to(engine, revision: str) -> None:
    with migration_lock(engine) as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def add_model(connection, model_id: int, name: str, sha256: str, original: str) -> None:
    connection.execute(text("INSERT INTO models (id, source_id, source, name, created_at, downloads) "
                            "VALUES (:id, 1, 'old', :name, CURRENT_TIMESTAMP, 0)"), {"id": model_id, "name": name})
    connection.execute(text(
        "INSERT INTO versions (id, model_id, source, model, version, architecture, vectors, dtype, kind, trigger, tags, "
        "title, description, sha256, size, original_sha256, original_size, original_format, training_metadata, "
        "created_at, yanked, downloads) VALUES (:id, :id, 'old', :name, '1', 'sd1', 1, 'float32', 'positive', :name, "
        "'[]', '', '', :sha, 10, :orig, 12, 'a1111', '{}', CURRENT_TIMESTAMP, FALSE, 0)"),
        {"id": model_id, "name": name, "sha": sha256, "orig": original})


def test_existing_versions_get_their_files_and_keep_resolving_by_hash(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_to(engine, "0004")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO sources (id, name, created_at) VALUES (1, 'old', CURRENT_TIMESTAMP)"))
        add_model(connection, 1, "Converted", _SHA_A, _SHA_B)  # uploaded as a .pt, stored canonical
        add_model(connection, 2, "AsIs", _SHA_B[:60] + "cccc", _SHA_B[:60] + "cccc")  # uploaded canonical
    migrate(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT version_id, format, filename, sha256, stored FROM version_files "
                                       "ORDER BY version_id, format")).all()
    assert [(r.version_id, r.format, r.filename, r.sha256, bool(r.stored)) for r in rows] == [
        (1, "original", "Converted.pt", _SHA_B, False), (1, "safetensors", "Converted.safetensors", _SHA_A, True),
        (2, "original", "AsIs.pt", _SHA_B[:60] + "cccc", True), (2, "safetensors", "AsIs.safetensors", _SHA_B[:60] + "cccc", True)]
    with Session(engine) as session:  # the upload's hash and the canonical file's both find them
        assert sorted(search_hash(session, parse_ref(_SHA_B[:12]), 10)) == [1, 2]
        assert search_hash(session, parse_ref(_SHA_A[:10]), 10) == [1]
    engine.dispose()


def test_names_differing_only_in_case_stop_the_migration_and_change_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_to(engine, "0004")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO sources (id, name, created_at) VALUES (1, 'old', CURRENT_TIMESTAMP)"))
        add_model(connection, 1, "EasyNegative", _SHA_A, _SHA_A)
        add_model(connection, 2, "easynegative", _SHA_B, _SHA_B)
    with pytest.raises(RuntimeError, match="old:easynegative"):
        migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0004"
        assert connection.execute(text("SELECT count(*) FROM models")).scalar_one() == 2
    engine.dispose()
