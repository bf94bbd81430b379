"""Full-text prefix queries at a public catalogue's size.

FTS5 answers a prefix query (``"style"*``) by merging the whole doclist of every term with that
prefix before it yields a row, so a word in 40 % of a 1,000,000-entry catalogue costs 20-40 ms
even for a page of 20; an exact term is read lazily, newest rowid first (0.5 ms). So the catalogue
keeps the vocabulary of its index (``search_terms``: every token FTS5 ever indexed, exactly as its
tokenizer wrote it) and a query word becomes the OR of the terms it is a prefix of, which FTS5
reads lazily. PostgreSQL keeps the same table for the same reason (see ``tsquery``). Exact: a term left over from an entry that changed matches nothing more than the
prefix did, and a word with too many expansions (or none known) keeps the prefix query. Tokens are
made by SQLite's own FTS5 tokenizer (an in-memory table with the index's tokenizer), so folding
(``café`` -> ``cafe``) and splitting are the index's to the character.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

#: At most this many terms replace one prefix word; more keep the prefix query. PostgreSQL's
#: planner guesses an OR of many rare lexemes to match far more rows than it does, and then walks
#: the whole primary key instead of the text index (60 ms instead of 9 for a word with 20 forms at
#: 1,000,000 entries), so it gets fewer.
MAX_EXPANSIONS = 48
MAX_EXPANSIONS_POSTGRES = 4
#: The index's tokenizer (migration 0002).
TOKENIZER = "unicode61"

_lock = threading.Lock()
_tokenizer: sqlite3.Connection | None = None


def fts_tokens(value: str) -> list[str]:
    """The tokens FTS5's tokenizer makes of ``value``, in order."""
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            connection = sqlite3.connect(":memory:", check_same_thread=False)
            connection.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize = '{TOKENIZER}')")
            connection.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
            _tokenizer = connection
        _tokenizer.execute("DELETE FROM t")
        _tokenizer.execute("INSERT INTO t (rowid, x) VALUES (1, ?)", (value,))
        return [row[0] for row in _tokenizer.execute("SELECT term FROM v ORDER BY offset")]


#: Created by migration 0005a; byte order ("C") so that a prefix is a range.
CREATE = {"sqlite": "CREATE TABLE search_terms (term TEXT PRIMARY KEY) WITHOUT ROWID",
          "postgresql": 'CREATE TABLE search_terms (term TEXT COLLATE "C" PRIMARY KEY)'}


def rebuild(connection: Any) -> None:
    """Fill the vocabulary from the index itself (migration 0005a; bulk loaders after a load)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("INSERT INTO search_terms (term) SELECT word FROM "
                                "ts_stat('SELECT search_vector FROM models WHERE search_vector IS NOT NULL') "
                                "ON CONFLICT DO NOTHING"))
        return
    connection.execute(text("CREATE VIRTUAL TABLE temp.pw_vocab USING fts5vocab(main, model_search, row)"))
    connection.execute(text("INSERT OR IGNORE INTO search_terms (term) SELECT term FROM temp.pw_vocab"))
    connection.execute(text("DROP TABLE temp.pw_vocab"))


def remember(session: Session, texts: Iterable[str]) -> None:
    """Add the terms of ``texts`` (an entry's indexed text) to the vocabulary, as the text index
    makes them (FTS5's tokenizer; PostgreSQL's 'simple' configuration), in one order so that
    concurrent publishes never wait for each other in a cycle."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("INSERT INTO search_terms (term) SELECT DISTINCT t FROM "
                             "unnest(tsvector_to_array(to_tsvector('simple', :text))) AS t ORDER BY t "
                             "ON CONFLICT DO NOTHING"), {"text": " ".join(texts)})
        return
    terms = sorted({token for value in texts for token in fts_tokens(value)})
    if terms:
        session.execute(text("INSERT OR IGNORE INTO search_terms (term) VALUES (:term)"), [{"term": t} for t in terms])


def _expansions(session: Session, token: str, cap: int) -> list[str] | None:
    """The known terms ``token`` begins (None: more than ``cap``, or none known)."""
    upper = token[:-1] + chr(ord(token[-1]) + 1)
    terms = session.execute(text("SELECT term FROM search_terms WHERE term >= :low AND term < :high "
                                 "ORDER BY term LIMIT :cap"),
                            {"low": token, "high": upper, "cap": cap + 1}).scalars().all()
    return list(terms) if 0 < len(terms) <= cap else None


def tsquery(session: Session, words: list[str]) -> str:
    """PostgreSQL: the to_tsquery text for ``words`` (each a prefix, all required). GIN looks up
    exact lexemes with its fast scan; a prefix (``w:*``) collects every posting of every lexeme
    it matches first (13 ms against 2.7 ms for two words at 1,000,000 entries)."""
    groups = []
    for word in words:  # letters and digits only (search._WORD): safe inside to_tsquery text
        token = word.lower()
        terms = _expansions(session, token, MAX_EXPANSIONS_POSTGRES)
        groups.append(f"{token}:*" if terms is None else "(" + " | ".join(terms) + ")")
    return " & ".join(groups)


def _phrase(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def match_expression(session: Session, words: list[str]) -> str:
    """The FTS5 query for ``words`` (each a prefix, all required), in its fastest exact form."""
    groups = []
    for word in words:
        tokens = fts_tokens(word)
        if len(tokens) != 1:  # nothing the index holds, or several tokens: the phrase as a prefix
            groups.append(_phrase(word.replace('"', "")) + "*")
            continue
        (token,) = tokens
        terms = _expansions(session, token, MAX_EXPANSIONS)
        if terms is None:
            groups.append(_phrase(token) + "*")
        else:
            groups.append("(" + " OR ".join(_phrase(term) for term in terms) + ")")
    return " AND ".join(groups)
