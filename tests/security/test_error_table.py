"""One source of truth for errors: each class's code and status, which the server answers and the
client maps back; foreign exceptions mapped by class, never a 500 for bad input; and the storage
guard's deadline and breaker. In process, no server needed."""

from __future__ import annotations

import asyncio
import errno
import json
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DataError, OperationalError

from pseudoword.registry.client import RegistryClient
from pseudoword.registry.core import errors as e
from pseudoword.registry.core.text import check_text
from pseudoword.registry.service.downloads import content_disposition, parse_range
from pseudoword.registry.service.errors import on_domain_error, on_exception
from pseudoword.registry.service.storage_guard import GuardedStore


def _all_errors() -> list[type[e.PseudowordError]]:
    found, todo = [], [e.PseudowordError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found[1:]


class _Request:
    method = "GET"

    class url:  # noqa: N801 - the attribute path Litestar's Request has
        path = "/test"


def _client_error(status: int, body: dict[str, Any] | None) -> e.PseudowordError:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body else httpx.Response(status, text="from a proxy")

    client = RegistryClient("http://registry.test", transport=httpx.MockTransport(answer))
    with pytest.raises(e.PseudowordError) as raised:
        client.health()
    return raised.value


def test_server_and_client_agree_on_every_error_class() -> None:
    for cls in _all_errors():
        if cls.status < 400:
            continue
        response = on_domain_error(_Request(), cls("message", {"k": 1}))  # type: ignore[arg-type]
        assert response.status_code == cls.status, cls
        body = json.loads(json.dumps(response.content))
        assert body == {"error": {"code": cls.code, "message": "message", "detail": {"k": 1}}}
        # With our body the client raises the class of that code ...
        raised = _client_error(cls.status, body)
        assert raised.code == cls.code and raised.status == cls.status, cls
        # ... and from a bare status (a proxy's answer), a class with that status.
        assert _client_error(cls.status, None).status == cls.status, cls


@pytest.mark.parametrize(("exc", "status", "code"), [
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 400, "invalid_request"),
    (RecursionError("maximum recursion depth exceeded"), 400, "invalid_request"),
    (OverflowError("Python int too large to convert to SQLite INTEGER"), 400, "invalid_request"),
    (LookupError("unknown encoding: x-no-such"), 400, "invalid_request"),
    (DataError("UPDATE ...", {}, Exception("value out of range")), 400, "invalid_request"),
    (OperationalError("SELECT 1", {}, Exception("connection refused")), 503, "database_unavailable"),
    (OSError(errno.ENOSPC, "No space left on device"), 507, "insufficient_storage"),
    (KeyError("a bug"), 500, "internal_error"),
    (ZeroDivisionError("a bug"), 500, "internal_error"),
])
def test_foreign_exceptions_map_by_class(exc: Exception, status: int, code: str) -> None:
    response = on_exception(_Request(), exc)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.content["error"]["code"] == code  # type: ignore[index]
    assert "UPDATE" not in json.dumps(response.content)  # no statement, no parameters


def test_text_rule() -> None:
    for good in ("bad-hands-5", "日本語トリガー", "café au lait", "emoji 🎨"):
        assert check_text(good, "x") == good
    assert check_text("two\nlines\ttab", "x", multiline=True)
    for bad in ("a\x00b", "a\x1bb", "a\u202eb", "a\u200bb", "a\ufeffb", "\ud800", "line\nbreak"):
        with pytest.raises(e.InvalidRequest):
            check_text(bad, "x")


def test_ranges_and_names() -> None:
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range("bytes=-3", 10) == (7, 3)
    assert parse_range("bytes=5-", 10) == (5, 5)
    assert parse_range("bytes=0-" + "9" * 5000, 10) == (0, 10)
    assert parse_range("bytes=" + "9" * 5000 + "-", 10) == "unsatisfiable"
    for ignored in ("bytes=0-1,3-4", "items=0-1", "bytes=5-1", "bytes=-", "garbage", None):
        assert parse_range(ignored, 10) is None
    assert content_disposition("plain.pt") == 'attachment; filename="plain.pt"'
    assert content_disposition('a"b\\c%.pt') == "attachment; filename=\"a_b_c_.pt\"; filename*=UTF-8''a%22b%5Cc%25.pt"
    assert content_disposition("日本.pt") == "attachment; filename=\"__.pt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.pt"


class _HangingStore:
    def __init__(self) -> None:
        self.release = threading.Event()

    def get(self, sha256: str) -> bytes:
        self.release.wait(10)
        return b"late"


def test_storage_guard_deadline_and_breaker() -> None:
    store = _HangingStore()
    guard = GuardedStore(store, threads=2, timeout=0.3, failures=2, cooldown=0.5)  # type: ignore[arg-type]
    try:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(e.StorageUnavailable, match="within 0.3 s"):
                guard.get("d")
            assert time.monotonic() - started < 1.0
        started = time.monotonic()
        with pytest.raises(e.StorageUnavailable, match="refused"):  # open: answered at once
            asyncio.run(guard.aget("d"))
        assert time.monotonic() - started < 0.1
        store.release.set()  # the store answers again
        time.sleep(0.6)
        assert guard.get("d") == b"late"  # the half-open trial succeeds and closes the breaker
        assert asyncio.run(guard.aget("d")) == b"late"
    finally:
        store.release.set()
        guard.close()
