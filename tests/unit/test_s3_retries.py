"""The S3 blob store retries S3's own transient 5xx answers, and reports a persistent one as
``storage_unavailable`` (no retry storm): checked against a tiny fake S3 endpoint on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("minio")

from pseudoword.registry.core.errors import StorageUnavailable  # noqa: E402
from pseudoword.registry.service.storage import open_store  # noqa: E402

DIGEST = "ab" * 32


class FakeS3:
    """Answers bucket checks with 200 and object PUTs with ``failures`` 500s, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.puts: list[bytes] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # bucket_exists
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.puts.append(body)
                if len(fake.puts) <= fake.failures:
                    error = (b"<?xml version=\"1.0\"?><Error><Code>InternalError</Code>"
                             b"<Message>try again</Message></Error>")
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                self.send_response(200)
                self.send_header("ETag", '"0123"')
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"s3://127.0.0.1:{self.server.server_port}/blobs?secure=false&region=us-east-1"


@pytest.fixture()
def fake_s3(request: pytest.FixtureRequest) -> Iterator[FakeS3]:
    fake = FakeS3(request.param)
    yield fake
    fake.server.shutdown()


@pytest.mark.parametrize("fake_s3", [2], indirect=True)
def test_transient_500s_are_retried_until_the_upload_lands(fake_s3: FakeS3) -> None:
    store = open_store(fake_s3.url, "key", "secret-key")
    store.put(DIGEST, b"payload")
    assert fake_s3.puts == [b"payload"] * 3


@pytest.mark.parametrize("fake_s3", [100], indirect=True)
def test_a_persistent_500_is_storage_unavailable_after_a_few_tries(fake_s3: FakeS3) -> None:
    store = open_store(fake_s3.url, "key", "secret-key")
    with pytest.raises(StorageUnavailable, match="object storage"):
        store.put(DIGEST, b"payload")
    assert 2 <= len(fake_s3.puts) <= 4
