"""``--publish``: the trained file into the registry through its client, with the final sample
as its preview where the client can upload previews (issue 16 adds them; until then the file
is published alone and the result says so)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from pseudoword.runtime.training.trainer import TrainResult

#: The parameter names a client's ``publish`` may take preview images under.
_PREVIEW_PARAMETERS = ("previews", "preview")


@dataclass(frozen=True)
class Published:
    record: dict[str, Any]
    created: bool
    preview_sent: bool


def preview_parameter(client: Any) -> str | None:
    parameters = inspect.signature(client.publish).parameters
    return next((name for name in _PREVIEW_PARAMETERS if name in parameters), None)


def publish_result(client: Any, result: TrainResult, ref: str, *, progress: Any = None) -> Published:
    emb = result.embedding
    kind = emb.metadata.get("pseudoword.kind", "object")
    extra: dict[str, Any] = {}
    parameter = preview_parameter(client)
    sample = result.final_sample
    if parameter is not None and sample is not None:
        extra[parameter] = [sample] if parameter == "previews" else sample
    answer = client.publish(result.path, id=ref, filename=result.path.name, trigger=emb.name, kind="positive",
                            tags=(kind, "textual-inversion"), title=emb.name,
                            description=emb.metadata.get("modelspec.description"), progress=progress, **extra)
    return Published(answer.record, answer.created, bool(extra))
