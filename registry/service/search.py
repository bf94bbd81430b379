"""Catalogue search: full text (FTS5 on SQLite, tsvector on PostgreSQL), filters, sorts and
keyset cursors. One row per model: its newest version that is not yanked (denormalised onto
``models`` by ``index_model`` so a search reads one table plus the text index)."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from pseudoword.registry.core.embedding import ARCHITECTURES
from pseudoword.registry.core.errors import InvalidReference, InvalidRequest
from pseudoword.registry.core.modelspec import BASE_MODELS
from pseudoword.registry.core.refs import HASH_LENGTHS, SOURCE_RE, HashRef, parse_ref
from pseudoword.registry.service import search_terms
from pseudoword.registry.service.models import Model, Version

SORTS = ("relevance", "newest", "downloads")
KINDS = ("positive", "negative")
#: What a tag may hold (publish normalises tags to it; the filter takes the same).
TAG = re.compile(r"[a-z0-9][a-z0-9 ._+-]*")
_SOURCE = re.compile(SOURCE_RE)
#: The range of the integer columns a cursor's keys are compared with.
_INT64 = (-(2**63), 2**63 - 1)
#: Relevance ranks at most this many matches, the newest models among them. Scoring (BM25 on
#: SQLite, ts_rank on PostgreSQL) costs about a microsecond per match, so a word in a third of
#: a 100,000-model catalogue took 40-60 ms to rank; the newest matches come from the index's own
#: order, so the cap makes any query cheap. Older matches of such a word stay reachable by
#: sort=newest or sort=downloads, or by a narrower query.
RELEVANCE_CANDIDATES = 1000
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_WORDS = 16


@dataclass(frozen=True)
class Query:
    q: str | None = None
    architecture: str | None = None
    kind: str | None = None
    tag: str | None = None
    source: str | None = None
    base_model: str | None = None
    sort: str = "relevance"
    limit: int = 20
    cursor: str | None = None


def index_fields(source: str, name: str, version: str, title: str, description: str, tags: list[str],
                 trigger: str) -> dict[str, str]:
    """The text each full-text column holds for a model (bulk loaders use it too)."""
    raw = {"name": f"{source} {name} {version}", "title": title, "description": description,
           "tags": " ".join(tags), "trigger": trigger}
    # Both engines index the same words the query side splits out (e.g. "bad-hands_5" -> bad hands 5).
    return {key: " ".join(_WORD.findall(value)).lower() for key, value in raw.items()}


def index_model(session: Session, model: Model, latest: Version | None) -> None:
    """Refresh the searchable copy of a model after its latest version changed."""
    dialect = session.get_bind().dialect.name
    tags = json.loads(latest.tags) if latest else []
    session.execute(text("DELETE FROM model_tags WHERE model_id = :id"), {"id": model.id})
    for tag in sorted(set(tags)):
        session.execute(text("INSERT INTO model_tags (model_id, tag) VALUES (:id, :tag)"), {"id": model.id, "tag": tag})
    fields = index_fields(model.source, model.name, latest.version if latest else "",
                          latest.title if latest else "", latest.description if latest else "", tags,
                          latest.trigger if latest else "")
    if dialect == "postgresql":
        session.execute(
            text(
                "UPDATE models SET search_vector = "
                "setweight(to_tsvector('simple', :name), 'A') || setweight(to_tsvector('simple', :trigger), 'A') || "
                "setweight(to_tsvector('simple', :title), 'B') || setweight(to_tsvector('simple', :tags), 'B') || "
                "setweight(to_tsvector('simple', :description), 'C') WHERE id = :id"
            ),
            {**fields, "id": model.id},
        )
        if latest is not None:
            search_terms.remember(session, fields.values())
    else:
        session.execute(text("DELETE FROM model_search WHERE rowid = :id"), {"id": model.id})
        if latest is not None:
            session.execute(
                text("INSERT INTO model_search (rowid, name, title, description, tags, trigger) "
                     "VALUES (:id, :name, :title, :description, :tags, :trigger)"),
                {**fields, "id": model.id},
            )
            search_terms.remember(session, fields.values())


def hash_query(q: str | None) -> HashRef | None:
    """A query that is a file hash (64, 12 or 10 hex digits, optionally ``sha256:`` etc.), else None."""
    text_ = (q or "").strip()
    if not text_ or len(text_) > 80 or " " in text_:
        return None
    try:
        ref = parse_ref(text_.lower())
    except InvalidReference:
        return None
    return ref if isinstance(ref, HashRef) else None


def search_hash(session: Session, ref: HashRef, limit: int) -> list[int]:
    """Ids of the versions one of whose files (upload, canonical, exports) has this hash: the
    versions themselves, pinned ones included, newest unyanked first."""
    if len(ref.value) == HASH_LENGTHS["sha256"]:
        match, params = "f.sha256 = :digest", {"digest": ref.value}
    else:
        match, params = "f.sha256 >= :low AND f.sha256 < :high", {"low": ref.value, "high": ref.value + "g"}
    rows = session.execute(text(
        f"SELECT v.id FROM versions v WHERE v.id IN (SELECT f.version_id FROM version_files f WHERE {match}) "
        "ORDER BY v.yanked, v.created_at DESC, v.id DESC LIMIT :limit"), {**params, "limit": limit}).scalars()
    return list(rows)


def search(session: Session, query: Query) -> tuple[list[int], str | None]:
    """Ids of the matching models' latest versions, in order, and the cursor of the next page.
    A query that is a file hash finds the versions with that file, when there are any."""
    if query.sort not in SORTS:
        raise InvalidRequest(f"sort must be one of {', '.join(SORTS)}, not {query.sort!r}")
    if not 1 <= query.limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100")
    _check_filters(query)
    digest = hash_query(query.q)
    if digest is not None and not query.cursor:
        found = search_hash(session, digest, query.limit)
        if found:  # else the hex digits may be a word someone wrote: searched as text
            return found, None
    dialect = session.get_bind().dialect.name
    words = _WORD.findall(query.q or "")[:MAX_QUERY_WORDS]
    sort = query.sort if words or query.sort != "relevance" else "newest"
    last = _decode_cursor(query.cursor, sort) if query.cursor else None  # before any early answer
    params: dict[str, Any] = {"limit": query.limit + 1}
    where = ["m.latest_version_id IS NOT NULL"]
    for column in ("architecture", "kind", "source", "base_model"):
        value = getattr(query, column)
        if value:
            # SQLite has no statistics (nothing runs ANALYZE), so its planner takes the index of a
            # two- or three-valued column and sorts a third of the catalogue; '+' leaves it the
            # sort's index, which meets a page of matches within a few rows.
            hint = "+" if dialect == "sqlite" and column not in ("source", "base_model") else ""
            where.append(f"{hint}m.{column} = :{column}")
            params[column] = value
    if query.tag:
        where.append("EXISTS (SELECT 1 FROM model_tags t WHERE t.model_id = m.id AND t.tag = :tag)")
        params["tag"] = query.tag.lower()
    filtered = len(where) > 1
    # Ranking scores every candidate, so only when it orders.
    rank = "0.0"
    source = "models m"
    if words:
        if dialect == "postgresql":
            params["tsq"] = search_terms.tsquery(session, words)
            where.append("m.search_vector @@ to_tsquery('simple', :tsq)")
            if sort == "relevance":
                rank = "-CAST(ts_rank(m.search_vector, to_tsquery('simple', :tsq)) AS double precision)"  # best first
        else:
            params["fts"] = search_terms.match_expression(session, words)
            matches = "SELECT rowid FROM model_search WHERE model_search MATCH :fts"
            if sort == "relevance":
                source = "model_search s JOIN models m ON m.id = s.rowid"
                where.append("model_search MATCH :fts")
                rank = "bm25(model_search, 10.0, 5.0, 1.0, 5.0, 10.0)"  # ascending = best first
            else:
                # Two ways to a page sorted by newest or downloads: collect every match and sort
                # them (cost grows with the matches), or walk the sort's index and ask the text
                # index about each model (cost grows with catalogue / matches). Which is cheaper
                # depends on how common the words are, estimated from how closely the newest
                # matches lie (read lazily, newest first: cheap however common the words are).
                newest = session.execute(text(f"{matches} ORDER BY rowid DESC LIMIT :cap"),
                                         {**params, "cap": RELEVANCE_CANDIDATES}).scalars().all()
                estimated = float(len(newest))
                if len(newest) == RELEVANCE_CANDIDATES:
                    estimated *= _catalogue_size(session) / max(1, newest[0] - newest[-1] + 1)
                if estimated >= _walk_threshold(session, query.limit):
                    where.append("EXISTS (SELECT 1 FROM model_search s WHERE model_search MATCH :fts AND s.rowid = m.id)")
                else:
                    where.append(f"m.id IN ({matches})")
        if sort == "relevance" and dialect == "postgresql":
            # The candidates are the newest matches (backwards along the primary key, or through
            # the text index when there are few); only they are scored, in the same statement.
            source = f"(SELECT * FROM models m WHERE {' AND '.join(where)} ORDER BY m.id DESC LIMIT :cap) m"
            where, params["cap"] = ["TRUE"], RELEVANCE_CANDIDATES
        elif sort == "relevance":
            # bm25() only runs inside the full-text query, so the candidates come first: the
            # newest matches, walked in the index's rowid order without scoring. Unfiltered, the
            # index alone answers (it holds exactly the models with a latest version: index_model).
            candidates = list(session.execute(text(
                f"SELECT s.rowid FROM {source if filtered else 'model_search s'} "
                f"WHERE {' AND '.join(where) if filtered else 'model_search MATCH :fts'} "
                "ORDER BY s.rowid DESC LIMIT :cap"), {**params, "cap": RELEVANCE_CANDIDATES}).scalars())
            if not candidates:
                return [], None
            # They passed every filter already. FTS5 seeks the rowid range itself; the set skips
            # the other rows in that range unscored (unfiltered, every row in it is a candidate).
            params["floor"] = candidates[-1]
            if filtered:
                params["candidates"] = json.dumps(candidates)
                where = ["model_search MATCH :fts", "s.rowid >= :floor",
                         "+s.rowid IN (SELECT value FROM json_each(:candidates))"]
    order = {"relevance": "r.rank ASC, r.id ASC", "newest": "r.created DESC, r.id DESC",
             "downloads": "r.downloads DESC, r.id DESC"}[sort]
    outer_where = ""
    if last is not None:
        params["c_id"] = last["id"]
        if sort == "relevance":
            params["c_key"] = float(last["key"])
            outer_where = "WHERE (r.rank > :c_key OR (r.rank = :c_key AND r.id > :c_id))"
        elif sort == "downloads":
            params["c_key"] = int(last["key"])
            outer_where = "WHERE (r.downloads < :c_key OR (r.downloads = :c_key AND r.id < :c_id))"
        else:
            params["c_key"] = last["key"]
            outer_where = "WHERE (r.created < :c_key OR (r.created = :c_key AND r.id < :c_id))"
            if dialect == "postgresql":
                outer_where = outer_where.replace(":c_key", "CAST(:c_key AS timestamptz)")
    if dialect == "sqlite" and words and sort == "relevance" and not filtered:
        # Rank inside the full-text index and look up models for the page only.
        ranked = (f"SELECT r.id, r.rank FROM (SELECT rowid AS id, {rank} AS rank FROM model_search "
                  f"WHERE model_search MATCH :fts AND rowid >= :floor) r {outer_where} ORDER BY {order} LIMIT :limit")
        sql = (f"SELECT r.id, m.latest_version_id AS version_id, r.rank, m.downloads AS downloads, "
               f"m.latest_created_at AS created FROM ({ranked}) r JOIN models m ON m.id = r.id ORDER BY {order}")
    else:
        inner = (f"SELECT m.id AS id, m.latest_version_id AS version_id, {rank} AS rank, "
                 f"m.downloads AS downloads, m.latest_created_at AS created FROM {source} WHERE {' AND '.join(where)}")
        sql = (f"SELECT r.id, r.version_id, r.rank, r.downloads, r.created FROM ({inner}) r {outer_where} "
               f"ORDER BY {order} LIMIT :limit")
    rows = session.execute(text(sql), params).all()
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        last_row = rows[-1]
        key = {"relevance": last_row.rank, "downloads": last_row.downloads,
               "newest": _ts(last_row.created)}[sort]
        next_cursor = _encode_cursor(sort, key, last_row.id)
    return [row.version_id for row in rows], next_cursor


#: Measured on SQLite at 1,000,000 entries: collecting and sorting matches costs about 0.3 us each,
#: asking the text index whether one model matches about 25 us. Walking the sort's index finds a
#: page of ``limit`` among matches of density d in limit / d probes, so it wins from
#: matches = sqrt(limit * catalogue * 25 / 0.3); at either side of that a page costs at most ~12 ms.
_PROBE_PER_MATCH = 25 / 0.3


def _catalogue_size(session: Session) -> int:
    """The text index's largest rowid (models are numbered from 1): the catalogue's size, near enough."""
    return int(session.execute(text("SELECT max(rowid) FROM model_search")).scalar() or 0)


def _walk_threshold(session: Session, limit: int) -> int:
    """How many matches make walking the sort's index cheaper than sorting every match."""
    return max(RELEVANCE_CANDIDATES, int(math.sqrt((limit + 1) * _catalogue_size(session) * _PROBE_PER_MATCH)))


def _check_filters(query: Query) -> None:
    """Filter values must be ones the catalogue can hold: anything else is a clear 400 (and never
    reaches the database, which refuses some text outright, such as NUL on PostgreSQL)."""
    if query.architecture and query.architecture not in ARCHITECTURES:
        raise InvalidRequest(f"architecture must be one of {', '.join(ARCHITECTURES)}")
    if query.kind and query.kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}")
    if query.source and not _SOURCE.fullmatch(query.source):
        raise InvalidRequest("source must be lowercase letters, digits, '_' or '-', at most 64")
    if query.base_model and query.base_model not in BASE_MODELS:
        raise InvalidRequest(f"base_model must be one of {', '.join(BASE_MODELS)}")
    if query.tag and not TAG.fullmatch(query.tag.lower()):
        raise InvalidRequest("tag must be letters, digits, space, '.', '_', '+' or '-'")


def _ts(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _is_int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]


def _encode_cursor(sort: str, key: Any, model_id: int) -> str:
    raw = json.dumps({"s": sort, "k": key, "i": model_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if data["s"] != sort:
            raise ValueError("sort changed")
        key, model_id = data["k"], data["i"]
        if not _is_int64(model_id):
            raise ValueError("bad cursor id")
        if sort == "relevance":
            if isinstance(key, bool) or not isinstance(key, (int, float)) or not math.isfinite(key):
                raise ValueError("bad cursor key")
        elif sort == "downloads":
            if not _is_int64(key):
                raise ValueError("bad cursor key")
        else:
            if not isinstance(key, str) or len(key) > 40:
                raise ValueError("bad cursor key")
            datetime.fromisoformat(key)  # a timestamp, as the database compares it (kept as written)
        return {"key": key, "id": model_id}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError, RecursionError):
        raise InvalidRequest("invalid cursor: pass the next_cursor of the previous page with the same sort") from None
