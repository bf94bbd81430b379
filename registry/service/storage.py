"""Blob storage behind one interface: a content-addressed local directory (the embedded default)
and any S3 server (MinIO in production) through the ``minio`` client.

Blobs are addressed by their SHA-256 (``sha256/ab/cd/<digest>``, as pypa/warehouse lays out
files), so writing is idempotent and two replicas writing the same blob cannot conflict.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from pseudoword.registry.core.env import truthy
from pseudoword.registry.core.errors import InsufficientStorage, PseudowordError, StorageUnavailable
from pseudoword.registry.core.files import atomic_write

#: Prefix of a blob being written (renamed into place when whole); gc removes stale ones.
TMP_PREFIX = ".tmp-"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def blob_key(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    modified: float  # seconds since the epoch: mtime, or S3's LastModified


class BlobStore(Protocol):
    def put(self, sha256: str, data: bytes) -> None:
        """Store the blob, or refresh the age of the one already there (gc spares young blobs)."""

    def get(self, sha256: str) -> bytes: ...

    def size(self, sha256: str) -> int | None: ...

    def modified(self, sha256: str) -> float | None: ...

    def delete(self, sha256: str) -> None: ...

    def list_blobs(self) -> Iterator[StoredBlob]: ...

    def remove_stale_temporaries(self, older_than: float) -> list[str]:
        """Delete partial writes a crash left behind, older than ``older_than`` (epoch seconds)."""

    def presigned_url(self, sha256: str, expires: timedelta = timedelta(minutes=15)) -> str | None: ...

    def check(self) -> None:
        """Raise StorageUnavailable when the store cannot be reached."""


def _os_error(what: str, exc: OSError) -> PseudowordError:
    if exc.errno in _DISK_FULL:
        return InsufficientStorage(f"no space left for the blob store during {what}; nothing was stored")
    return StorageUnavailable(f"blob store failed during {what}: {exc.strerror or type(exc).__name__}")


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        return self.root / blob_key(sha256)

    def put(self, sha256: str, data: bytes) -> None:
        path = self._path(sha256)
        for _attempt in range(3):  # gc may remove the blob or a partial write (as stale) meanwhile
            try:
                if path.is_file() and path.stat().st_size == len(data):
                    os.utime(path)  # young again: gc checks a blob's age again before deleting it
                    return
                self._write(path, data)
                return
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _os_error("upload", exc) from None
        raise StorageUnavailable("blob store: the blob kept vanishing while it was written")

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        atomic_write(path, data, mode=0o600, prefix=TMP_PREFIX)  # readers see no blob or the whole blob

    def get(self, sha256: str) -> bytes:
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError:
            raise StorageUnavailable(f"blob {sha256} is missing from the store") from None
        except OSError as exc:
            raise _os_error("download", exc) from None

    def size(self, sha256: str) -> int | None:
        try:
            return self._path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def modified(self, sha256: str) -> float | None:
        try:
            return self._path(sha256).stat().st_mtime
        except FileNotFoundError:
            return None

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def list_blobs(self) -> Iterator[StoredBlob]:
        for path in (self.root / "sha256").glob("*/*/*"):
            if len(path.name) == 64 and not path.name.startswith(TMP_PREFIX):
                try:
                    yield StoredBlob(path.name, path.stat().st_mtime)
                except FileNotFoundError:
                    continue

    def remove_stale_temporaries(self, older_than: float) -> list[str]:
        removed = []
        for path in (self.root / "sha256").glob(f"*/*/{TMP_PREFIX}*"):
            try:
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    removed.append(str(path.relative_to(self.root)))
            except FileNotFoundError:
                continue
        return sorted(removed)

    def presigned_url(self, sha256: str, expires: timedelta = timedelta(minutes=15)) -> str | None:
        return None  # a local directory has no URL of its own: the API serves the bytes

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"blob directory {self.root} is not writable")


class S3BlobStore:
    """S3 through ``minio``, with short timeouts and few retries so an outage answers 503 fast."""

    def __init__(self, endpoint: str, bucket: str, access_key: str | None, secret_key: str | None,
                 secure: bool = False, region: str | None = None, timeout: float = 10.0) -> None:
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(
            # A server that accepts but never answers frees the thread by the storage deadline.
            timeout=urllib3.Timeout(connect=min(2.0, timeout), read=timeout),
            # A server that is not there fails fast (one connect retry), but S3's own 500/503
            # (InternalError, SlowDown) are retried three times, as AWS's SDKs do.
            retries=urllib3.Retry(total=4, connect=1, read=1, status=3, backoff_factor=0.1,
                                  status_forcelist=[500, 502, 503, 504]),
            maxsize=32,
        )
        self.bucket = bucket
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region, http_client=http)
        self._bucket_checked = False

    def _call(self, what: str, func, *args, **kwargs):  # type: ignore[no-untyped-def]
        from minio.error import S3Error

        try:
            return func(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise FileNotFoundError(what) from None
            if exc.code in ("QuotaExceeded", "XMinioStorageFull", "EntityTooLarge"):
                raise InsufficientStorage(f"object storage is full ({exc.code}) during {what}; nothing was stored") from None
            raise StorageUnavailable(f"object storage refused {what}: {exc.code}") from None
        except Exception as exc:  # noqa: BLE001 - urllib3/socket errors: the server is not there
            raise StorageUnavailable(f"object storage unreachable during {what}: {type(exc).__name__}") from None

    def ensure_bucket(self) -> None:
        if self._bucket_checked:
            return
        if not self._call("bucket check", self.client.bucket_exists, self.bucket):
            try:
                self._call("bucket creation", self.client.make_bucket, self.bucket)
            except StorageUnavailable:
                if not self._call("bucket check", self.client.bucket_exists, self.bucket):
                    raise
        self._bucket_checked = True

    def put(self, sha256: str, data: bytes) -> None:
        self.ensure_bucket()
        self._call("upload", self.client.put_object, self.bucket, blob_key(sha256), io.BytesIO(data), len(data),
                   content_type="application/octet-stream")

    def get(self, sha256: str) -> bytes:
        try:
            response = self._call("download", self.client.get_object, self.bucket, blob_key(sha256))
        except FileNotFoundError:
            raise StorageUnavailable(f"blob {sha256} is missing from the bucket") from None
        try:
            return self._call("download", response.read)  # type: ignore[no-any-return]
        finally:
            response.close()
            response.release_conn()

    def _stat(self, sha256: str):  # type: ignore[no-untyped-def]
        try:
            return self._call("stat", self.client.stat_object, self.bucket, blob_key(sha256))
        except FileNotFoundError:
            return None

    def size(self, sha256: str) -> int | None:
        stat = self._stat(sha256)
        return None if stat is None else stat.size

    def modified(self, sha256: str) -> float | None:
        stat = self._stat(sha256)
        return None if stat is None else stat.last_modified.timestamp()

    def delete(self, sha256: str) -> None:
        self._call("delete", self.client.remove_object, self.bucket, blob_key(sha256))

    def list_blobs(self) -> Iterator[StoredBlob]:
        if not self._call("bucket check", self.client.bucket_exists, self.bucket):
            return  # never written to (the bucket is made on the first upload): it holds nothing
        objects = self._call("listing", self.client.list_objects, self.bucket, prefix="sha256/", recursive=True)
        for obj in objects:
            name = obj.object_name.rsplit("/", 1)[-1]
            if len(name) == 64:
                yield StoredBlob(name, obj.last_modified.timestamp())

    def remove_stale_temporaries(self, older_than: float) -> list[str]:
        return []  # an S3 PUT is atomic: no partial object is ever visible

    def presigned_url(self, sha256: str, expires: timedelta = timedelta(minutes=15)) -> str | None:
        return self._call("presign", self.client.presigned_get_object, self.bucket, blob_key(sha256), expires=expires)

    def check(self) -> None:
        self._bucket_checked = False
        self.ensure_bucket()


def open_store(url: str, access_key: str | None = None, secret_key: str | None = None,
               timeout: float = 10.0) -> BlobStore:
    """``file:///path`` or ``s3://[KEY:SECRET@]host:port/bucket?secure=false&region=...``."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalBlobStore(Path(unquote(parts.path)))
    if parts.scheme in ("s3", "minio"):
        query = parse_qs(parts.query)
        bucket = parts.path.strip("/")
        if not bucket or not parts.hostname:
            raise ValueError("PSEUDOWORD_STORAGE_URL must look like s3://host:port/bucket")
        endpoint = parts.hostname + (f":{parts.port}" if parts.port else "")
        secure = truthy(query.get("secure", ["false"])[0], "the storage URL's secure=")
        return S3BlobStore(endpoint, bucket,
                           access_key or (unquote(parts.username) if parts.username else None),
                           secret_key or (unquote(parts.password) if parts.password else None),
                           secure=secure, region=query.get("region", [None])[0], timeout=timeout)
    raise ValueError(f"unsupported storage URL scheme {parts.scheme!r}: use file:// or s3://")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
