"""Preview images of a version: checked with Pillow, thumbnailed once, stored as blobs by digest.

An image is accepted only when it is wholly a PNG, JPEG or WEBP file within the size and pixel
limits: the header's dimensions are checked before any pixel is decoded (a decompression bomb is
a small file claiming billions of pixels; Pillow's ``DecompressionBombError`` and warning are
refused too), then ``verify()`` and a full decode must pass (a truncated file fails), and no
bytes may follow the image's end (a polyglot: an image with an archive or a page appended).
Refusals happen before anything is stored. The upload is kept as sent (its A1111 ``parameters``
text included, which we read and show); the page shows a WEBP thumbnail made once at upload.

Order (as for embeddings, catalogue.py): write both blobs, then commit the rows under the blob
lock; gc keeps every blob a preview row refers to.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError

from pseudoword.registry.core.errors import InvalidFile, InvalidRequest, NotFound, PseudowordError, TooLarge
from pseudoword.registry.core.modelspec import embedded_thumbnail
from pseudoword.registry.core.png_embedding import png_chunks
from pseudoword.registry.core.record import PreviewRecord, VersionRecord
from pseudoword.registry.service.models import Model, Preview, Version
from pseudoword.registry.service.settings import Settings

log = logging.getLogger(__name__)

#: Content type of each accepted format (the thumbnails are WEBP).
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_P = Preview.__table__  # type: ignore[attr-defined]
#: The previews of some versions, in their order (a search page reads it on every request: Core, no session).
_Q_BY_VERSIONS = (select(_P).where(_P.c.version_id.in_(bindparam("ids", expanding=True)))
                  .order_by(_P.c.version_id, _P.c.position, _P.c.id))
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
#: A1111 writes its generation settings here (PNG text chunk; EXIF UserComment in JPEG/WEBP).
_PARAMETERS_KEY = "parameters"
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286
MAX_PARAMETERS_CHARS = 8000
_THUMB_QUALITY = 82


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed every check, with its thumbnail."""

    data: bytes
    sha256: str
    format: str
    width: int
    height: int
    parameters: str
    thumbnail: bytes
    thumb_sha256: str


def sniff_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_image(data: bytes, settings: Settings, name: str = "preview") -> CheckedImage:
    """Check one uploaded image and make its thumbnail, or raise a clear ``InvalidFile``/``TooLarge``."""
    if len(data) > settings.max_preview_bytes:
        raise TooLarge(f"{name} is {len(data)} bytes; at most {settings.max_preview_bytes} allowed",
                       {"size": len(data), "limit": settings.max_preview_bytes})
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidFile(f"{name} is not a PNG, JPEG or WEBP image (starts with {data[:8]!r})")
    _refuse_trailing_bytes(data, fmt, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as probe:
                width, height = probe.size
                _check_dimensions(width, height, settings, name)
                if getattr(probe, "n_frames", 1) != 1:
                    raise InvalidFile(f"{name} is animated ({probe.n_frames} frames); a preview is one still image")
                probe.verify()
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as image:
                image.load()  # the whole decode: a truncated or corrupt file fails here
                parameters = _parameters(image, fmt)
                thumbnail = _thumbnail(image, settings.preview_thumbnail_side)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLarge(f"{name} is a decompression bomb: it claims more pixels than allowed "
                           f"({settings.max_preview_pixels})", {"limit": settings.max_preview_pixels}) from None
        except (InvalidFile, TooLarge):
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            raise InvalidFile(f"{name} is not a readable {fmt.upper()} image: {str(exc)[:200] or type(exc).__name__}",
                              {"format": fmt}) from None
    return CheckedImage(data=data, sha256=hashlib.sha256(data).hexdigest(), format=fmt, width=width, height=height,
                        parameters=parameters, thumbnail=thumbnail, thumb_sha256=hashlib.sha256(thumbnail).hexdigest())


def _check_dimensions(width: int, height: int, settings: Settings, name: str) -> None:
    if width < 1 or height < 1:
        raise InvalidFile(f"{name} has no pixels ({width}x{height})")
    if max(width, height) > settings.max_preview_side:
        raise TooLarge(f"{name} is {width}x{height} pixels; each side may be at most {settings.max_preview_side}",
                       {"width": width, "height": height, "limit": settings.max_preview_side})
    if width * height > settings.max_preview_pixels:
        raise TooLarge(f"{name} is {width}x{height} = {width * height} pixels; at most "
                       f"{settings.max_preview_pixels} allowed (a decompression bomb claims many)",
                       {"pixels": width * height, "limit": settings.max_preview_pixels})


def _refuse_trailing_bytes(data: bytes, fmt: str, name: str) -> None:
    """The image must end where the file ends: bytes after it make a polyglot (an image that is
    also a zip, a script or a page), which we do not store or serve."""
    if fmt == "png":
        end = max((chunk_end for _kind, _body, chunk_end in png_chunks(data)), default=0)
    elif fmt == "webp":
        end = int.from_bytes(data[4:8], "little") + 8  # RIFF's size counts its padded chunks
        if end > len(data):
            raise InvalidFile(f"truncated WEBP: {name} claims {end} bytes but has {len(data)}")
    else:  # JPEG: the last marker must be End Of Image
        end = len(data) if data.endswith(b"\xff\xd9") else -1
        if end < 0:
            raise InvalidFile(f"{name} does not end with a JPEG End Of Image marker: truncated, or with "
                              "other data appended (a polyglot), which is not accepted")
    if end != len(data):
        raise InvalidFile(f"{name} has {len(data) - end} bytes after the end of its {fmt.upper()} image "
                          "(a polyglot: other data appended to an image), which is not accepted",
                          {"trailing_bytes": len(data) - end})


def _parameters(image: Image.Image, fmt: str) -> str:
    """A1111's infotext (prompt, negative prompt, steps, sampler, seed, ...) if the image has it."""
    text: Any = image.info.get(_PARAMETERS_KEY) if fmt == "png" else None
    if text is None and fmt in ("jpeg", "webp"):
        comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
        if isinstance(comment, bytes):
            # EXIF UserComment: an 8-byte charset prefix, A1111 (piexif) writes UNICODE as UTF-16BE.
            prefix, body = comment[:8], comment[8:]
            text = body.decode("utf-16-be" if prefix.startswith(b"UNICODE") else "latin-1", "replace")
        elif isinstance(comment, str):
            text = comment
    if not isinstance(text, str):
        return ""
    clean = "".join(c for c in text if c in "\n\t" or (c.isprintable() and c not in "\u2028\u2029"))
    return clean.strip("\0 \n")[:MAX_PARAMETERS_CHARS]


def _thumbnail(image: Image.Image, side: int) -> bytes:
    thumb = ImageOps.exif_transpose(image)
    thumb = thumb.convert("RGBA" if "A" in thumb.getbands() or thumb.mode == "P" else "RGB")
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=_THUMB_QUALITY, method=4)
    return out.getvalue()


def check_images(files: list[tuple[str | None, bytes]], settings: Settings) -> list[CheckedImage]:
    """Check every image of one request before anything of it is stored."""
    if len(files) > settings.max_previews_per_request:
        raise InvalidRequest(f"{len(files)} preview images; at most {settings.max_previews_per_request} per request")
    return [check_image(data, settings, f"preview {filename or i + 1!r}") for i, (filename, data) in enumerate(files)]


def embedded_preview(content: bytes, settings: Settings) -> list[CheckedImage]:
    """The file's own ModelSpec thumbnail as its preview, for a publish that sends none: checked
    like an upload. The publisher did not send it, so one that fails the checks is left out (and
    logged) rather than failing the publish."""
    data = embedded_thumbnail(content)
    if data is None:
        return []
    try:
        return [check_image(data, settings, "the file's modelspec.thumbnail")]
    except PseudowordError as exc:
        log.warning("publish: the file's modelspec.thumbnail is not used: %s", exc.message)
        return []


def preview_url(sha256: str) -> str:
    return f"/api/v1/previews/{sha256}"


def preview_record(row: Any) -> PreviewRecord:
    """What a version record shows of a preview (an ORM row or a Core row: same names)."""
    return PreviewRecord(url=preview_url(row.sha256), thumbnail_url=preview_url(row.thumb_sha256), sha256=row.sha256,
                         format=row.format, media_type=MEDIA_TYPES[row.format], width=row.width, height=row.height,
                         size=row.size, parameters=row.parameters)


class Previews:
    """Attach, list and serve previews; over the catalogue's engine, store and blob lock."""

    def __init__(self, catalogue: Any) -> None:
        self.catalogue = catalogue

    def attach(self, version_id: int, images: list[CheckedImage]) -> list[PreviewRecord]:
        """Store the images' blobs, then their rows (an image already attached is a no-op).
        Returns the version's previews."""
        settings: Settings = self.catalogue.settings
        with self.catalogue.session() as session:
            existing = session.execute(select(Preview).where(Preview.version_id == version_id)).scalars().all()
        known = {row.sha256 for row in existing}
        new = [image for image in dict((i.sha256, i) for i in images).values() if image.sha256 not in known]
        if len(existing) + len(new) > settings.max_previews:
            raise InvalidRequest(f"a version may carry at most {settings.max_previews} previews; it has "
                                 f"{len(existing)} and {len(new)} more were sent", {"limit": settings.max_previews})
        if new:
            for image in new:
                self.catalogue.store.put(image.sha256, image.data)
                self.catalogue.store.put(image.thumb_sha256, image.thumbnail)
            with self.catalogue.session() as session:
                try:
                    for position, image in enumerate(new, start=len(existing)):
                        session.add(Preview(version_id=version_id, position=position, sha256=image.sha256,
                                            size=len(image.data), format=image.format, width=image.width,
                                            height=image.height, thumb_sha256=image.thumb_sha256,
                                            thumb_size=len(image.thumbnail), parameters=image.parameters))
                    session.flush()
                    self.catalogue._lock_blobs(session, exclusive=False)
                    session.commit()
                except IntegrityError:  # a concurrent request attached the same image first
                    session.rollback()
                    return self.attach(version_id, images)
            for image in new:  # a gc that raced the commit is undone
                self.catalogue._ensure_blob(image.sha256, image.data)
                self.catalogue._ensure_blob(image.thumb_sha256, image.thumbnail)
        return self.for_version_ids([version_id]).get(version_id, [])

    def remove(self, version_id: int, sha256: str) -> list[PreviewRecord]:
        """Take one preview off a version (its blobs go with the next gc, if nothing else uses them)."""
        with self.catalogue.session() as session:
            row = session.execute(select(Preview).where(Preview.version_id == version_id,
                                                        Preview.sha256 == sha256)).scalars().first()
            if row is None:
                raise NotFound(f"this version has no preview {sha256}")
            session.delete(row)
            session.commit()
        return self.for_version_ids([version_id]).get(version_id, [])

    def version_id(self, source: str, model: str, version: str) -> int:
        with self.catalogue.session() as session:
            found = session.execute(
                select(Version.id).join(Model, Model.id == Version.model_id)  # type: ignore[arg-type]
                .where(Model.source == source, Model.name == model, Version.version == version)).scalar()
        if found is None:
            raise NotFound(f"no version {source}:{model}@{version}")
        return int(found)

    def for_version_ids(self, version_ids: list[int], connection: Connection | None = None) -> dict[int, list[PreviewRecord]]:
        """Each version's previews in order (on ``connection`` when the caller holds one)."""
        if not version_ids:
            return {}
        if connection is not None:
            rows = connection.execute(_Q_BY_VERSIONS, {"ids": version_ids}).all()
        else:
            with self.catalogue.reader() as own:
                rows = own.execute(_Q_BY_VERSIONS, {"ids": version_ids}).all()
        found: dict[int, list[PreviewRecord]] = {}
        for row in rows:
            found.setdefault(row.version_id, []).append(preview_record(row))
        return found

    def add_to_records(self, records: Sequence[VersionRecord]) -> list[VersionRecord]:
        """Each version record (from ``catalogue.record``, which carries the row id) with its
        ``previews``, read in one indexed query (a search page pays for it on every request)."""
        found = self.for_version_ids([r.version_id for r in records if r.version_id is not None])
        return [replace(r, previews=tuple(found.get(r.version_id, ()))) if r.version_id is not None else r
                for r in records]

    def blob(self, sha256: str) -> tuple[str, int] | None:
        """(media type, size) of a preview image or thumbnail by digest, else None."""
        with self.catalogue.session() as session:
            row = session.execute(select(Preview).where(
                (Preview.sha256 == sha256) | (Preview.thumb_sha256 == sha256)).limit(1)).scalars().first()
        if row is None:
            return None
        if row.sha256 == sha256:
            return MEDIA_TYPES[row.format], row.size
        return MEDIA_TYPES["webp"], row.thumb_size
