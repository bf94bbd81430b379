"""Which version a model reference without ``@VERSION`` means: the newest version that is not
yanked (PEP 592: a yanked version resolves only when pinned exactly). The catalogue keeps the
same rule in SQL (``Catalogue._refresh_latest`` orders by ``created_at`` then row id, the database
form of ``newest_first``); everything outside the database calls ``latest_version``: the
resolver's offline answers, the CLI's ``show``, the web page's "use it" snippet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

R = TypeVar("R")


def _get(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


def newest_first(record: Any) -> tuple[str, str]:
    """Sort key, descending with ``reverse=True``: publication time (ISO 8601, UTC), then version."""
    return (str(_get(record, "created_at") or ""), str(_get(record, "version") or ""))


def latest_version(versions: Iterable[R]) -> R | None:
    """The newest version that is not yanked, or None when there is none."""
    candidates = [v for v in versions if not _get(v, "yanked")]
    return max(candidates, key=newest_first) if candidates else None
