"""Catalogue search: full text (FTS5 on SQLite, tsvector on PostgreSQL), filters, sorts and
keyset cursors. One row per model: its newest version that is not yanked (denormalised onto
``models`` by ``index_model`` so a search reads one table plus the text index)."""

from __future__ import annotations

import base64
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, text
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
#: Relevance ranks the matches this many at a time, newest first (see _relevance). Scoring (BM25 on
#: SQLite, ts_rank on PostgreSQL) costs about a microsecond per match and finding the newest ones
#: grows with the window on PostgreSQL, so a word in a third of a 1,000,000-model catalogue ranked
#: whole took 40-60 ms; a window keeps any page cheap and every match reachable.
RELEVANCE_WINDOW = 250
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_WORDS = 16
#: The text index's columns (migration 0002), in its order.
_FTS_COLUMNS = "name, title, description, tags, trigger"


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
                text(f"INSERT INTO model_search (rowid, {_FTS_COLUMNS}) "
                     "VALUES (:id, :name, :title, :description, :tags, :trigger)"),
                {**fields, "id": model.id},
            )
            search_terms.remember(session, fields.values())


def compact_index(session: Session) -> bool:
    """SQLite: merge the text index's segments into one (FTS5's 'optimize'; gc runs it). Inserts
    leave the index in a dozen segments or more and every lookup of a term seeks each of them:
    asking the index about one model (sort=newest walking a common word) took about 200 us with
    12 segments and 20 us with one (1,000,000 entries: 5.7 -> 0.6 ms a page). PostgreSQL's GIN
    index needs nothing (autovacuum flushes its pending list). Returns whether it ran."""
    if session.get_bind().dialect.name != "sqlite":
        return False
    session.execute(text("INSERT INTO model_search (model_search) VALUES ('optimize')"))
    session.commit()
    return True


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
    if words and sort == "relevance":
        return _relevance(session, dialect, words, where, params, query.limit, last)
    if words:
        if dialect == "postgresql":
            params["tsq"] = search_terms.tsquery(session, words)
            where.append("m.search_vector @@ to_tsquery('simple', :tsq)")
        else:
            params["fts"] = search_terms.match_expression(session, words)
            matches = "SELECT rowid FROM model_search WHERE model_search MATCH :fts"
            # Two ways to a page sorted by newest or downloads: collect every match and sort
            # them (cost grows with the matches), or walk the sort's index and ask the text
            # index about each model (cost grows with catalogue / matches). Which is cheaper
            # depends on how common the words are, estimated from how closely the newest
            # matches lie (read lazily, newest first: cheap however common the words are).
            newest = session.execute(text(f"{matches} ORDER BY rowid DESC LIMIT :sample"),
                                     {**params, "sample": _DENSITY_SAMPLE}).scalars().all()
            catalogue, estimated = _catalogue_size(session, dialect), float(len(newest))
            if len(newest) == _DENSITY_SAMPLE:
                estimated *= catalogue / max(1, newest[0] - newest[-1] + 1)
            if _walk_pays(estimated, catalogue, query.limit + 1, _SQLITE_PROBE_PER_MATCH):
                where.append("EXISTS (SELECT 1 FROM model_search s WHERE model_search MATCH :fts AND s.rowid = m.id)")
            else:
                where.append(f"m.id IN ({matches})")
    order = {"newest": "r.created DESC, r.id DESC", "downloads": "r.downloads DESC, r.id DESC"}[sort]
    outer_where = ""
    if last is not None:
        params["c_id"] = last["id"]
        if sort == "downloads":
            params["c_key"] = int(last["key"])
            outer_where = "WHERE (r.downloads < :c_key OR (r.downloads = :c_key AND r.id < :c_id))"
        else:
            params["c_key"] = last["key"]
            outer_where = "WHERE (r.created < :c_key OR (r.created = :c_key AND r.id < :c_id))"
            if dialect == "postgresql":
                outer_where = outer_where.replace(":c_key", "CAST(:c_key AS timestamptz)")
    inner = (f"SELECT m.id AS id, m.latest_version_id AS version_id, m.downloads AS downloads, "
             f"m.latest_created_at AS created FROM models m WHERE {' AND '.join(where)}")
    sql = (f"SELECT r.id, r.version_id, r.downloads, r.created FROM ({inner}) r {outer_where} "
           f"ORDER BY {order} LIMIT :limit")
    rows = session.execute(text(sql), params).all()
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        last_row = rows[-1]
        key = last_row.downloads if sort == "downloads" else _ts(last_row.created)
        next_cursor = _encode_cursor(sort, key, last_row.id)
    return [row.version_id for row in rows], next_cursor


def _relevance(session: Session, dialect: str, words: list[str], where: list[str], params: dict[str, Any],
               limit: int, last: dict[str, Any] | None) -> tuple[list[int], str | None]:
    """Matches by score, a window at a time: the RELEVANCE_WINDOW newest matches ranked, then the
    next older window, and so on. A page may end in one window and go on in the next; the cursor
    names its window by the window's newest model, so later publishes do not shift it."""
    if dialect == "postgresql":
        params["tsq"] = search_terms.tsquery(session, words)
    else:
        params["fts"] = search_terms.match_expression(session, words)
    top: int | None = last["window"] if last else None
    after = last
    page: list[tuple[Any, int]] = []
    while len(page) <= limit:
        window = _window(session, dialect, where, params, top)
        if not window.rows:
            break
        page += [(row, window.newest) for row in _best(window.rows, after, limit + 1 - len(page))]
        if not window.full:
            break
        top, after = window.oldest - 1, None
    next_cursor = None
    if len(page) > limit:
        page = page[:limit]
        row, newest = page[-1]
        next_cursor = _encode_cursor("relevance", row.rank, row.id, newest)
    return [row.version_id for row, _ in page], next_cursor


@dataclass(frozen=True)
class _Window:
    """One window of matches, scored: rows of (id, version_id, rank), a lower rank is better."""

    rows: list[Any]
    newest: int  # its newest model: the window's name in a cursor
    oldest: int
    full: bool  # False: no older matches are left


def _best(rows: list[Any], after: dict[str, Any] | None, count: int) -> list[Any]:
    """Up to ``count`` of a window's rows by score (best first, then id), after the cursor's row."""
    if after is not None:
        key, model_id = float(after["key"]), after["id"]
        rows = [row for row in rows if row.rank > key or (row.rank == key and row.id > model_id)]
    return sorted(rows, key=lambda row: (row.rank, row.id))[:count]


def _window(session: Session, dialect: str, where: list[str], params: dict[str, Any], top: int | None) -> _Window:
    """The RELEVANCE_WINDOW newest matches at or below ``top`` (the newest when None), scored."""
    if dialect == "postgresql":
        rows = _pg_window(session, where, params, top)
        ids = [row.id for row in rows]
    else:
        values = {**params, "window": RELEVANCE_WINDOW, "top": _INT64[1] if top is None else top}
        if len(where) > 1:  # filtered
            sql = ("SELECT s.rowid FROM model_search s JOIN models m ON m.id = s.rowid WHERE model_search MATCH :fts "
                   f"AND s.rowid <= :top AND {' AND '.join(where)} ORDER BY s.rowid DESC LIMIT :window")
        else:
            # Unfiltered, the text index alone answers: it holds exactly the models with a latest
            # version (index_model), read newest first without scoring.
            sql = ("SELECT rowid FROM model_search WHERE model_search MATCH :fts AND rowid <= :top "
                   "ORDER BY rowid DESC LIMIT :window")
        ids = list(session.execute(text(sql), values).scalars())
        rows = _bm25(session, ids, params["fts"]) if ids else []
    return _Window(rows, max(ids, default=0), min(ids, default=0), len(ids) == RELEVANCE_WINDOW)


def _pg_window(session: Session, where: list[str], params: dict[str, Any], top: int | None) -> list[Any]:
    """PostgreSQL: the window's rows, scored as they are read (the subquery's LIMIT comes first).

    GIN hands back every match at once, which PostgreSQL then reads from the table (about 2 us
    each), or the primary key is walked newest first, asking each model's vector (about 0.5 us
    each, window / density of them). The planner's cost model undervalues the walk's checks (6,000
    matches of two words: a 35 ms walk instead of a 17 ms bitmap), so its row estimate decides here
    and the order steers the plan: "m.id + 0" cannot walk. Between the two (matches too many to
    read them all, too few to walk), GIN's matches are first intersected with the span of newest
    ids that should hold a window of them, and only those are read; older ones when it held too few."""
    below = _INT64[1] if top is None else top
    rows: list[Any] = []
    while len(rows) < RELEVANCE_WINDOW and below > 0:
        wanted = RELEVANCE_WINDOW - len(rows)
        where_sql = " AND ".join([*where, "m.id <= :top", "m.search_vector @@ to_tsquery('simple', :tsq)"])
        values = {**params, "top": below, "window": wanted}
        matches = _pg_estimate(session, where_sql, values)
        size = min(below, _catalogue_size(session, "postgresql"))
        walk = _walk_pays(matches, size, wanted, _PG_WALK_ROW_PER_MATCH)
        span = None if walk else _span(matches, size, wanted)
        if span is not None:
            where_sql += " AND m.id > :low"
            values["low"] = below = size - span
        rows += session.execute(text(
            "SELECT w.id, w.version_id, "
            "-CAST(ts_rank(w.search_vector, to_tsquery('simple', :tsq)) AS double precision) AS rank "  # best first
            "FROM (SELECT m.id, m.latest_version_id AS version_id, m.search_vector FROM models m "
            f"WHERE {where_sql} ORDER BY {'m.id' if walk else 'm.id + 0'} DESC LIMIT :window) w"), values).all()
        if span is None:
            break
    return rows


#: PostgreSQL: a window's span of ids holds this many times the matches the estimate says it should.
_SPAN_MARGIN = 1.25


def _span(matches: float, size: int, wanted: int) -> int | None:
    """PostgreSQL: how many of the newest ids to intersect GIN's matches with, so that about
    ``wanted`` of them are read from the table, when that is cheaper than reading every match
    (the primary key's bitmap costs about 0.08 us an id, a match read 2 us); else None."""
    span = math.ceil(_SPAN_MARGIN * wanted * size / max(matches, 1.0))
    pays = span * _PG_RANGE_ID_PER_MATCH + _SPAN_MARGIN * wanted < matches
    return span if pays and span < size else None


#: The weights of the text index's columns in bm25(), in _FTS_COLUMNS' order.
_BM25_WEIGHTS = "10.0, 5.0, 1.0, 5.0, 10.0"


def _bm25(session: Session, ids: list[int], fts: str) -> list[Any]:
    """SQLite: the window's models scored. bm25() over the catalogue's index first counts every
    row of each query term (15-20 ms for a word in 40 % of 1,000,000 entries), so the window is
    scored in a small FTS5 table of its own (temp: never written to the database file, one per
    connection): the same tokenizer, columns and weights; how rare a term is, is the window's."""
    session.execute(text(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.pw_window USING fts5({_FTS_COLUMNS}, "
                         f"tokenize = '{search_terms.TOKENIZER}')"))
    session.execute(text("DELETE FROM temp.pw_window"))
    session.execute(text(f"INSERT INTO temp.pw_window (rowid, {_FTS_COLUMNS}) SELECT rowid, {_FTS_COLUMNS} "
                         "FROM model_search WHERE rowid IN (SELECT value FROM json_each(:ids))"),
                    {"ids": json.dumps(ids)})
    return list(session.execute(text(
        f"SELECT w.rowid AS id, m.latest_version_id AS version_id, bm25(pw_window, {_BM25_WEIGHTS}) AS rank "
        "FROM temp.pw_window w JOIN models m ON m.id = w.rowid WHERE pw_window MATCH :fts"), {"fts": fts}).all())


#: What reading one row of a sort's index and asking the text index about it costs, in matches
#: collected and sorted (see _walk_pays). Measured at 1,000,000 entries. SQLite: collecting costs
#: about 0.3 us a match, asking FTS5 about one model about 25 us. PostgreSQL: a match from GIN read
#: from the table about 2 us, a row of the primary key with its vector checked about 0.5 us.
_SQLITE_PROBE_PER_MATCH = 25 / 0.3
_PG_WALK_ROW_PER_MATCH = 0.5 / 2
_PG_RANGE_ID_PER_MATCH = 0.08 / 2
#: How many of a query's newest matches SQLite reads to tell how common its words are.
_DENSITY_SAMPLE = 1000


def _walk_pays(matches: float, catalogue: int, wanted: int, cost_per_match: float) -> bool:
    """Whether walking a sort's index, asking each row whether it matches, finds ``wanted`` matches
    more cheaply than collecting every match and sorting them. Matches of density matches /
    catalogue take wanted * catalogue / matches rows of walking, so walking wins once
    matches ** 2 > wanted * catalogue * cost_per_match; either way costs most near that point."""
    return matches * matches > wanted * catalogue * cost_per_match


#: The catalogue's size only steers a plan and moves slowly: read at most this often per database.
_SIZE_SECONDS = 10.0
_sizes: WeakKeyDictionary[Engine, tuple[float, int]] = WeakKeyDictionary()


def _catalogue_size(session: Session, dialect: str) -> int:
    """The largest model id (models are numbered from 1): the catalogue's size, near enough."""
    engine = session.get_bind().engine
    read_at, size = _sizes.get(engine, (-_SIZE_SECONDS, 0))
    if time.monotonic() - read_at < _SIZE_SECONDS:
        return size
    sql = "SELECT max(id) FROM models" if dialect == "postgresql" else "SELECT max(rowid) FROM model_search"
    size = int(session.execute(text(sql)).scalar() or 0)
    _sizes[engine] = (time.monotonic(), size)
    return size


def _pg_estimate(session: Session, where_sql: str, values: dict[str, Any]) -> float:
    """PostgreSQL's own estimate of the rows that pass ``where_sql`` (from its statistics; close
    for words and filters alike), without running the query."""
    plan = session.execute(text(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM models m WHERE {where_sql}"), values).scalar()
    document: Any = json.loads(plan) if isinstance(plan, str) else plan
    return float(document[0]["Plan"]["Plan Rows"])


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


def _encode_cursor(sort: str, key: Any, model_id: int, window: int | None = None) -> str:
    fields = {"s": sort, "k": key, "i": model_id} | ({"w": window} if window is not None else {})
    raw = json.dumps(fields, separators=(",", ":")).encode()
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
        window = data.get("w")  # relevance: the window's newest model (absent: the newest window)
        if sort == "relevance":
            if isinstance(key, bool) or not isinstance(key, (int, float)) or not math.isfinite(key):
                raise ValueError("bad cursor key")
            if window is not None and not _is_int64(window):
                raise ValueError("bad cursor window")
        elif sort == "downloads":
            if not _is_int64(key):
                raise ValueError("bad cursor key")
        else:
            if not isinstance(key, str) or len(key) > 40:
                raise ValueError("bad cursor key")
            datetime.fromisoformat(key)  # a timestamp, as the database compares it (kept as written)
        return {"key": key, "id": model_id, "window": window}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError, RecursionError):
        raise InvalidRequest("invalid cursor: pass the next_cursor of the previous page with the same sort") from None
