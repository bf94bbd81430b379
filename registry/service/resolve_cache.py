"""A per-process cache of resolved records, emptied whenever the catalogue changes.

Resolve is the hot path of every inference service; with three refs per request the database
lookups cost several times what the HTTP framing does (bench_registry). Resolved records change
only when a version is published, yanked or unyanked (they carry no download count), so the cache
keeps the answer for a ref text until any committed change to the catalogue is seen, by any
process; a download counter moving is not such a change (migration 0004):

- SQLite: ``PRAGMA data_version`` on a connection that never writes changes whenever another
  connection (in this process or any other) has committed; then ``catalogue_generation``, which
  triggers move with every change but a counter's, says whether it was a catalogue change.
  Checked on every lookup; exact.
- PostgreSQL: a trigger sends ``NOTIFY pseudoword_catalogue`` with each committing change
  (migrations 0003, 0004) and a thread in each replica LISTENs. Another replica's change is seen as soon
  as the notification arrives (milliseconds); while the listener is not connected the cache is
  bypassed, so a lost connection costs speed, never correctness.

Only successful lookups are cached: an unknown ref is asked again, so a new publish is
resolvable at once everywhere.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Protocol

from sqlalchemy import Engine

from pseudoword.registry.core.record import VersionRecord

log = logging.getLogger(__name__)

#: The PostgreSQL channel migration 0003's trigger notifies.
CHANNEL = "pseudoword_catalogue"


#: (changes seen from the database, changes this process made); it moves with every commit.
Generation = tuple[int, int]


class ChangeWatcher(Protocol):
    def generation(self) -> Generation | None:
        """A value that differs after every committed change; None when changes cannot be seen."""

    def bump(self) -> None:
        """This process changed the catalogue: forget what was cached, without waiting to be told."""

    def close(self) -> None: ...


class _LocalCounter:
    def __init__(self) -> None:
        self._local = 0

    def bump(self) -> None:
        self._local += 1


class SqliteWatcher(_LocalCounter):
    def __init__(self, database: str) -> None:
        super().__init__()
        # Never writes and never holds a transaction, so every other connection's commit moves data_version.
        self._connection = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._data_version: int | None = None
        self._catalogue = 0

    def generation(self) -> Generation | None:
        with self._lock:
            (version,) = self._connection.execute("PRAGMA data_version").fetchone()
            if version != self._data_version:  # something was committed: was it a catalogue change?
                (self._catalogue,) = self._connection.execute(
                    "SELECT value FROM catalogue_generation WHERE id = 1").fetchone()
                self._data_version = version
        return self._catalogue, self._local

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class PostgresWatcher(_LocalCounter):
    """LISTENs in a daemon thread; reconnects with back-off when the connection drops."""

    def __init__(self, conninfo: str, retry_seconds: float = 1.0) -> None:
        super().__init__()
        self._conninfo, self._retry = conninfo, retry_seconds
        self._notified = 0
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pseudoword-listen", daemon=True)
        self._thread.start()

    def generation(self) -> Generation | None:
        if not self._listening.is_set():
            return None
        return self._notified, self._local

    @property
    def notifications(self) -> int:
        """How many changes (and reconnections) this listener has heard of."""
        return self._notified

    def wait_listening(self, timeout: float) -> bool:
        """True once the listener is connected (tests wait for it)."""
        return self._listening.wait(timeout)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5,
                                     keepalives=1, keepalives_idle=10, keepalives_interval=5,
                                     keepalives_count=3) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._notified += 1  # whatever was cached before LISTEN took effect is gone
                    self._listening.set()
                    while not self._stop.is_set():
                        for _notify in connection.notifies(timeout=1.0):
                            self._notified += 1
            except Exception as exc:  # noqa: BLE001 - any failure: stop trusting the cache, retry
                if self._listening.is_set():
                    log.warning("catalogue change listener lost its connection (%s); "
                                "resolve cache off until it is back", type(exc).__name__)
            finally:
                self._listening.clear()
            self._stop.wait(self._retry)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)


class NoWatcher(_LocalCounter):
    """In-memory databases and unknown dialects: nothing is cached."""

    def generation(self) -> Generation | None:
        return None

    def close(self) -> None:
        pass


def watcher_for(engine: Engine) -> ChangeWatcher:
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return SqliteWatcher(url.database)
    if url.get_backend_name() == "postgresql":
        return PostgresWatcher(url.set(drivername="postgresql").render_as_string(hide_password=False))
    return NoWatcher()


class ResolveCache:
    """Ref text -> record, valid for one catalogue generation; bounded, oldest entries go first."""

    def __init__(self, watcher: ChangeWatcher, max_entries: int = 4096) -> None:
        self.watcher, self.max_entries = watcher, max_entries
        self._entries: dict[str, VersionRecord] = {}  # frozen: a caller cannot change what others read
        self._generation: Generation | None = None
        self._lock = threading.Lock()

    def current(self) -> Generation | None:
        """The generation now, dropping every entry if it moved. Read it before a lookup's query."""
        generation = self.watcher.generation()
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = generation
        return generation

    def get(self, text: str) -> VersionRecord | None:
        return self._entries.get(text)

    def put(self, text: str, record: VersionRecord, generation: Generation | None) -> None:
        """Keep a record read at ``generation``; dropped if the catalogue has moved on since."""
        if generation is None:
            return
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[text] = record

    def changed(self) -> None:
        self.watcher.bump()
        self.current()

    def close(self) -> None:
        self.watcher.close()
