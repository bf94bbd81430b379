"""``--publish``: the trained file into the registry through its client, with the final sample
(when samples were made) as its preview."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pseudoword.runtime.training.trainer import TrainResult

if TYPE_CHECKING:
    from pseudoword.registry.client import RegistryClient
    from pseudoword.registry.core.record import VersionRecord


@dataclass(frozen=True)
class Published:
    record: VersionRecord
    created: bool
    preview_sent: bool


def publish_result(client: RegistryClient, result: TrainResult, ref: str, *, progress: Any = None) -> Published:
    emb = result.embedding
    kind = emb.metadata.get("pseudoword.kind", "object")
    sample = result.final_sample
    previews = (sample,) if sample is not None else ()
    answer = client.publish(result.path, id=ref, filename=result.path.name, trigger=emb.name, kind="positive",
                            tags=(kind, "textual-inversion"), title=emb.name,
                            description=emb.metadata.get("modelspec.description"), progress=progress,
                            previews=previews)
    return Published(answer.record, answer.created, bool(previews))
