"""models.toml: which checkpoints a worker serves, and the pipelines loaded for them.

```toml
[[model]]
air = "civitai:4384@128713"          # what clients send as "model"
path = "pipelines/dreamshaper"       # a diffusers pipeline directory (relative to this file)
architecture = "sd1"                 # sd1 | sd2 | sdxl; checked against the pipeline at load
name = "DreamShaper 8"               # optional, shown by modelSearch
tags = ["photo"]                     # optional, for modelSearch
[model.defaults]                     # optional; used where a task leaves the key out
width = 512
height = 512
steps = 25
CFGScale = 7
scheduler = "DPM++ 2M Karras"
clipSkip = 0
```

Pipelines load once at start and stay loaded; each has its own queue (see ``batcher``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pseudoword.registry.core.embedding import ARCHITECTURES
from pseudoword.registry.core.errors import InvalidRequest

#: Runware's architecture names (modelSearch) for ours, and back.
RUNWARE_ARCH = {"sd1": "sd1x", "sd2": "sd2x", "sdxl": "sdxl"}
FROM_RUNWARE_ARCH = {value: key for key, value in RUNWARE_ARCH.items()} | {a: a for a in ARCHITECTURES}
DEFAULT_KEYS = {"width", "height", "steps", "CFGScale", "scheduler", "clipSkip", "negativePrompt"}
_MODEL_KEYS = {"air", "path", "architecture", "name", "tags", "defaults", "device"}
_AIR = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}:[A-Za-z0-9][A-Za-z0-9._-]{0,127}@[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_URN = re.compile(r"^urn:air:[a-z0-9]+:checkpoint:(.+)$")
MAX_MODELS_FILE = 1024 * 1024


@dataclass(frozen=True)
class ModelSpec:
    """One checkpoint as models.toml declares it."""

    air: str
    path: Path
    architecture: str
    name: str
    tags: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    device: str | None = None

    def with_defaults(self, task: dict[str, Any]) -> dict[str, Any]:
        """The task with this model's defaults where it leaves a key out."""
        merged = dict(task)
        for key, value in self.defaults.items():
            if merged.get(key) is None:
                merged[key] = value
        return merged


def load_models_file(path: Path | str) -> list[ModelSpec]:
    """Parse and check models.toml; InvalidRequest names the entry and key at fault."""
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest(f"models file {path} does not exist", {"path": str(path)})
    if path.stat().st_size > MAX_MODELS_FILE:
        raise InvalidRequest(f"models file {path} is larger than {MAX_MODELS_FILE} bytes", {"path": str(path)})
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"models file {path} is not valid TOML: {exc}", {"path": str(path)}) from None
    entries = document.get("model")
    unknown = sorted(set(document) - {"model"})
    if unknown:
        raise InvalidRequest(f"{path}: unknown top-level keys {unknown}; expected [[model]] tables", {"path": str(path)})
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest(f"{path} declares no models: add [[model]] tables with air, path and architecture",
                             {"path": str(path)})
    specs: list[ModelSpec] = []
    for index, entry in enumerate(entries):
        where = f"{path}: model {index + 1}"
        bad = sorted(set(entry) - _MODEL_KEYS)
        if bad:
            raise InvalidRequest(f"{where} has unknown keys {bad}; expected {sorted(_MODEL_KEYS)}")
        air = entry.get("air")
        if not isinstance(air, str) or not _AIR.match(air):
            raise InvalidRequest(f"{where}: air must be SOURCE:MODEL@VERSION (e.g. civitai:4384@128713), got {air!r}")
        directory = entry.get("path")
        if not isinstance(directory, str) or not directory:
            raise InvalidRequest(f"{where} ({air}): path must name a diffusers pipeline directory")
        arch = entry.get("architecture")
        if arch not in ARCHITECTURES:
            raise InvalidRequest(f"{where} ({air}): architecture must be one of {', '.join(ARCHITECTURES)}, "
                                 f"got {arch!r}")
        defaults = entry.get("defaults") or {}
        if not isinstance(defaults, dict) or set(defaults) - DEFAULT_KEYS:
            raise InvalidRequest(f"{where} ({air}): defaults may set {sorted(DEFAULT_KEYS)}, got "
                                 f"{sorted(defaults) if isinstance(defaults, dict) else defaults!r}")
        tags = entry.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InvalidRequest(f"{where} ({air}): tags must be a list of strings")
        if any(spec.air == air for spec in specs):
            raise InvalidRequest(f"{where}: {air} is declared twice")
        resolved = Path(directory) if Path(directory).is_absolute() else (path.parent / directory)
        specs.append(ModelSpec(air=air, path=resolved.resolve(), architecture=arch,
                               name=str(entry.get("name") or air), tags=tuple(tags), defaults=dict(defaults),
                               device=entry.get("device")))
    return specs


def canonical_air(model: Any) -> str | None:
    """A task's ``model`` as models.toml keys it (a full checkpoint URN is accepted too)."""
    if not isinstance(model, str):
        return None
    match = _URN.match(model)
    return match.group(1) if match else model


@dataclass
class LoadedModel:
    """A checkpoint with its pipeline, loaded once."""

    spec: ModelSpec
    pipe: Any

    @property
    def air(self) -> str:
        return self.spec.air


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load ``spec``'s pipeline and check that its text side is the declared architecture."""
    from pseudoword.runtime.generation import load_pipeline
    from pseudoword.runtime.text_stack import text_stack

    pipe = load_pipeline(spec.path, device=spec.device)
    pipe.set_progress_bar_config(disable=True)
    actual = text_stack(pipe).architecture
    if actual != spec.architecture:
        raise InvalidRequest(f"{spec.air}: models.toml says architecture {spec.architecture} but the pipeline in "
                             f"{spec.path} is {actual}", {"air": spec.air})
    return LoadedModel(spec, pipe)
