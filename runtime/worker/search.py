"""``modelSearch``: the worker's own checkpoints (category ``checkpoint``) and the registry's
catalogue of embeddings (category ``embeddings``), in Runware's result shape
(``{taskType, taskUUID, results: [{air, name, version, category, architecture, tags, heroImage,
private, comment, ...}], totalResults}``).

The registry pages with cursors; Runware clients page with ``offset``. The worker walks the
catalogue's pages (100 a request) up to ``MAX_SCAN`` matches, so ``totalResults`` is exact up to
that many and says ``MAX_SCAN`` beyond it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pseudoword.registry.core.errors import PseudowordError
from pseudoword.runtime.worker.models import FROM_RUNWARE_ARCH, RUNWARE_ARCH
from pseudoword.runtime.worker.protocol import Task, TaskError

if TYPE_CHECKING:
    from pseudoword.runtime.worker.service import Worker

MAX_SCAN = 1000
MAX_LIMIT = 100
CATEGORIES = ("checkpoint", "embeddings")
#: Runware categories this worker has nothing of: answered with no results, not an error.
EMPTY_CATEGORIES = ("lora", "lycoris", "controlnet", "vae")
_KEYS = {"taskType", "taskUUID", "search", "tags", "category", "type", "architecture", "conditioning",
         "visibility", "limit", "offset", "customTaskUUID", "retry"}


def _checkpoint(spec: Any) -> dict[str, Any]:
    return _drop_none(_checkpoint_item(spec))


def _checkpoint_item(spec: Any) -> dict[str, Any]:
    version = spec.air.partition("@")[2]
    return {"air": spec.air, "name": spec.name, "version": version, "category": "checkpoint",
            "architecture": RUNWARE_ARCH[spec.architecture], "tags": list(spec.tags), "heroImage": "",
            "private": False, "comment": "", "type": "base",
            "defaultWidth": spec.defaults.get("width"), "defaultHeight": spec.defaults.get("height"),
            "defaultSteps": spec.defaults.get("steps"), "defaultScheduler": spec.defaults.get("scheduler"),
            "defaultCFG": spec.defaults.get("CFGScale")}


def _drop_none(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if value is not None}


def _embedding(record: dict[str, Any]) -> dict[str, Any]:
    return {"air": record["id"], "name": record.get("title") or record["model"], "version": record["version"],
            "category": "embeddings", "architecture": RUNWARE_ARCH.get(record["architecture"], record["architecture"]),
            "tags": list(record.get("tags") or []), "heroImage": "", "private": False,
            "comment": record.get("description") or "", "type": record.get("kind") or "positive",
            "positiveTriggerWords": record.get("trigger") or "", "vectors": record.get("vectors")}


def _params(data: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise TaskError("unknownParameter", f"unknown modelSearch keys {unknown}", parameter=unknown[0])
    search = data.get("search")
    if search is not None and (not isinstance(search, str) or len(search) > 200):
        raise TaskError("invalidSearch", "search must be a string of at most 200 characters", parameter="search")
    tags = data.get("tags") or []
    if not isinstance(tags, list) or len(tags) > 8 or not all(isinstance(t, str) and len(t) <= 64 for t in tags):
        raise TaskError("invalidTags", "tags must be a list of at most 8 strings", parameter="tags")
    category = data.get("category")
    if category is not None and (not isinstance(category, str) or len(category) > 32):
        raise TaskError("invalidCategory", "category must be a string such as checkpoint or embeddings",
                        parameter="category")
    architecture = data.get("architecture")
    if architecture is not None and (not isinstance(architecture, str) or len(architecture) > 32):
        raise TaskError("invalidArchitecture", "architecture must be a string such as sd1x or sdxl",
                        parameter="architecture")
    kind = data.get("type")
    if kind is not None and kind not in ("positive", "negative", "base"):
        raise TaskError("invalidType", "type must be positive or negative (embeddings) or base (checkpoints)",
                        parameter="type")
    out = {"search": search, "tags": tags, "category": category, "architecture": architecture, "type": kind}
    for key, low, high, default in (("limit", 1, MAX_LIMIT, 20), ("offset", 0, MAX_SCAN, 0)):
        value = data.get(key, default)
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise TaskError(f"invalid{key.capitalize()}", f"{key} must be an integer from {low} to {high}",
                            parameter=key)
        out[key] = value
    visibility = data.get("visibility")
    if visibility not in (None, "public", "private", "all"):
        raise TaskError("invalidVisibility", "visibility must be public, private or all", parameter="visibility")
    out["private_only"] = visibility == "private"
    return out


def _checkpoints(worker: Worker, p: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    words = (p["search"] or "").lower().split()
    arch = FROM_RUNWARE_ARCH.get(p["architecture"]) if p["architecture"] else None
    for model in worker.models.values():
        spec = model.spec
        text = " ".join([spec.air, spec.name, *spec.tags]).lower()
        if words and not all(word in text for word in words):
            continue
        if p["architecture"] and spec.architecture != arch:
            continue
        if any(tag.lower() not in {t.lower() for t in spec.tags} for tag in p["tags"]):
            continue
        if p["type"] not in (None, "base"):
            continue
        found.append(_checkpoint(spec))
    return found


def _embeddings(worker: Worker, p: dict[str, Any], want: int) -> tuple[list[dict[str, Any]], int]:
    """Catalogue matches (the first ``want``) and how many there are (up to MAX_SCAN)."""
    arch = FROM_RUNWARE_ARCH.get(p["architecture"]) if p["architecture"] else None
    if p["architecture"] and arch is None:
        return [], 0
    tags = [t.lower() for t in p["tags"]]
    client = worker.resolver.client
    items: list[dict[str, Any]] = []
    total = 0
    cursor = None
    while total < MAX_SCAN:
        page = client.search(p["search"] or None, architecture=arch, tag=tags[0] if tags else None,
                             kind=p["type"] if p["type"] in ("positive", "negative") else None,
                             limit=MAX_LIMIT, cursor=cursor)
        for record in page.get("items", []):
            if record.get("yanked"):
                continue
            if any(tag not in {t.lower() for t in record.get("tags") or []} for tag in tags[1:]):
                continue
            total += 1
            if len(items) < want:
                items.append(_embedding(record))
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return items, min(total, MAX_SCAN)


async def model_search(worker: Worker, task: Task) -> dict[str, Any]:
    p = _params(task.data)
    category = p["category"]
    results: list[dict[str, Any]] = []
    total = 0
    if not p["private_only"] and category not in EMPTY_CATEGORIES:
        if category in (None, "checkpoint"):
            checkpoints = _checkpoints(worker, p)
            results, total = checkpoints, len(checkpoints)
        if category in (None, "embeddings", "embedding"):
            want = p["offset"] + p["limit"]
            try:
                found, count = await asyncio.get_running_loop().run_in_executor(
                    worker.executor, _embeddings, worker, p, max(want - len(results), 0))
            except PseudowordError as exc:
                code, status = ("registryUnavailable", 503) if exc.status >= 500 else ("invalidSearch", 400)
                raise TaskError(code, f"the registry's catalogue could not be searched: {exc.message}",
                                status=status) from None
            results, total = results + found, total + count
        elif category not in (None, "checkpoint"):
            raise TaskError("invalidCategory", f"category {category!r} is not one of {', '.join(CATEGORIES)}"
                            f" (or {', '.join(EMPTY_CATEGORIES)}, of which this worker has none)",
                            parameter="category")
    page = results[p["offset"]: p["offset"] + p["limit"]]
    return {"taskType": "modelSearch", "taskUUID": task.task_uuid, "results": page, "totalResults": total}
