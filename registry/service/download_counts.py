"""Download counters, written best effort, in batches, after the bytes went out.

A download never waits for the catalogue database: the handler adds one to an in-memory tally
once its response is sent, and a thread writes the tallies every ``interval`` seconds in one
transaction. When the database cannot be written (full disk, locked, gone) the tallies are kept
and written with the next batch; downloads go on meanwhile. The counter columns' updates are no
catalogue change (migration 0004), so they leave every replica's resolve cache as it was.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from sqlalchemy import Engine, bindparam, update

from pseudoword.registry.service.models import Model, Version

log = logging.getLogger("pseudoword.downloads")
_V, _M = Version.__table__, Model.__table__  # type: ignore[attr-defined]
_ADD_VERSION = update(_V).where(_V.c.id == bindparam("row")).values(downloads=_V.c.downloads + bindparam("n"))
_ADD_MODEL = update(_M).where(_M.c.id == bindparam("row")).values(downloads=_M.c.downloads + bindparam("n"))
#: Distinct versions kept while the database cannot be written; beyond that new counts are dropped.
MAX_PENDING = 100_000


class DownloadCounter:
    def __init__(self, engine: Engine, interval: float = 2.0) -> None:
        self.engine, self.interval = engine, interval
        self._versions: Counter[int] = Counter()
        self._models: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, version_id: int, model_id: int) -> None:
        """One finished download of a version (never raises: counting must not fail a download)."""
        with self._lock:
            if len(self._versions) >= MAX_PENDING and version_id not in self._versions:
                return
            self._versions[version_id] += 1
            self._models[model_id] += 1
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pseudoword-downloads", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> bool:
        """Write what was counted so far; False (counts kept for the next try) if it failed."""
        with self._flush_lock:
            with self._lock:
                versions, models = self._versions, self._models
                self._versions, self._models = Counter(), Counter()
            if not versions:
                return True
            try:
                with self.engine.begin() as connection:
                    connection.execute(_ADD_VERSION, [{"row": k, "n": n} for k, n in sorted(versions.items())])
                    connection.execute(_ADD_MODEL, [{"row": k, "n": n} for k, n in sorted(models.items())])
            except Exception as exc:  # noqa: BLE001 - any failure: keep the counts, try again later
                log.warning("could not write %d download count(s) yet: %s", sum(versions.values()), type(exc).__name__)
                with self._lock:
                    self._versions.update(versions)
                    self._models.update(models)
                return False
            return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
        self.flush()
