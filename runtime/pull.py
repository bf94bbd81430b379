"""Pull: an embedding resolved through the verified cache, written into a folder under the name
AUTOMATIC1111 and ComfyUI call it by (its trigger), in the format asked for. `pseudoword pull`
is a thin command over ``pull``.

A file already there is never replaced silently: the same bytes are skipped (nothing written),
other bytes are refused (``Conflict``) unless ``force`` is given, so a pull never destroys a
user's own file that happens to share the name."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pseudoword.registry.core.errors import Conflict, InvalidRequest
from pseudoword.registry.core.files import atomic_write
from pseudoword.runtime.cache import sha256_file
from pseudoword.runtime.resolver import Resolver

PullFormat = Literal["safetensors", "a1111", "diffusers"]
#: File name suffix per format; the diffusers form gets its own so it never overwrites the canonical
#: file (A1111/ComfyUI read both, but the diffusers one is for load_textual_inversion).
PULL_SUFFIXES: dict[str, str] = {"safetensors": ".safetensors", "a1111": ".pt", "diffusers": ".diffusers.safetensors"}


@dataclass(frozen=True)
class Pulled:
    ref: str
    id: str
    path: Path
    format: str
    size: int
    sha256: str  # of the file written (an export differs from the canonical file)
    canonical_sha256: str
    trigger: str
    architecture: str
    kind: str
    yanked: bool
    yanked_reason: str | None
    action: Literal["written", "unchanged", "replaced"]

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "id": self.id, "path": str(self.path), "format": self.format, "size": self.size,
                "sha256": self.sha256, "canonical_sha256": self.canonical_sha256, "trigger": self.trigger,
                "architecture": self.architecture, "kind": self.kind, "yanked": self.yanked, "action": self.action}


def pulled_file_name(trigger: str, format: str) -> str:
    from pseudoword.registry.core.writing import safe_filename

    return f"{safe_filename(trigger)}{PULL_SUFFIXES[format]}"


def pull(resolver: Resolver, ref: str, to: Path, *, format: str = "safetensors", force: bool = False) -> Pulled:
    """Resolve ``ref`` and write it into the folder ``to``; see the module docstring for what an
    existing file of the same name gets."""
    if format not in PULL_SUFFIXES:
        raise InvalidRequest(f"unknown format {format!r}; expected one of {', '.join(PULL_SUFFIXES)}")
    resolved = resolver.resolve([ref])[0]
    canonical = resolved.read_bytes()  # checked against the record's sha256 again
    if format == "safetensors":
        data = canonical
    else:
        from pseudoword.registry.core.reading import read_embedding
        from pseudoword.registry.core.writing import export_bytes

        data = export_bytes(read_embedding(canonical, filename=resolved.path.name), format, resolved.trigger)
    digest = hashlib.sha256(data).hexdigest()
    target = to / pulled_file_name(resolved.trigger, format)
    action: Literal["written", "unchanged", "replaced"] = "written"
    if target.is_file():
        if sha256_file(target) == digest:
            action = "unchanged"
        elif not force:
            raise Conflict(f"{target} exists with other content; pass --force to replace it with {resolved.id}",
                           {"path": str(target), "id": resolved.id})
        else:
            action = "replaced"
    elif target.exists():
        raise Conflict(f"{target} exists and is not a file", {"path": str(target)})
    if action != "unchanged":
        to.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
    record = resolved.record
    return Pulled(ref=ref, id=resolved.id, path=target, format=format, size=len(data), sha256=digest,
                  canonical_sha256=resolved.sha256, trigger=resolved.trigger, architecture=resolved.architecture,
                  kind=resolved.kind, yanked=record.yanked, yanked_reason=record.yanked_reason,
                  action=action)

