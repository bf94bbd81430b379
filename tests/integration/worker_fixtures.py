"""Shared pieces of the worker's integration tests: a live registry holding real embedding files
from the corpus, and the requests the tests send."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pseudoword.registry.client import RegistryClient
from tests.integration.servers import Server
from tests.worker_harness import SD1_AIR

KEY = "worker-test-key"
#: ref -> (corpus file, kind, tags): sd1 files of few vectors (8 mixes stay in one 75-token chunk)
#: and one SDXL file for the wrong-architecture case.
EMBEDDINGS = {
    "wk:badhands@1": ("bad-hands-5.pt", "negative", ["hands", "negative"]),
    "wk:badartist@1": ("bad-artist.pt", "negative", ["negative"]),
    "wk:eyeliner@1": ("eyeliner2.pt", "positive", ["style", "makeup"]),
    "wk:ulzzang@1": ("ulzzang-6500.pt", "positive", ["style", "portrait"]),
    "wk:badimage@1": ("bad-image-v2-39000.pt", "negative", ["negative"]),
    "wk:invoke@1": ("invokeai_test_embedding.safetensors", "positive", ["style"]),
    "wk:easyneg@1": ("EasyNegative.safetensors", "negative", ["negative", "popular"]),
    "wk:glass@1": ("Style-Glass.pt", "positive", ["style", "glass"]),
    "wk:pdxl@1": ("zPDXL.pt", "positive", ["style", "pony"]),
}


def publish_all(registry: Server, embeddings_dir: Path, refs: dict[str, Any] | None = None) -> None:
    with RegistryClient(registry.url, registry.admin_token) as client:
        for ref, (name, kind, tags) in (refs or EMBEDDINGS).items():
            client.publish(embeddings_dir / name, id=ref, kind=kind, tags=tags, title=f"{ref} title")


def task(**changes: Any) -> dict[str, Any]:
    """A small imageInference task (64x64, 3 steps, PNG as base64 so pixels can be compared)."""
    item = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": SD1_AIR,
            "positivePrompt": "a lighthouse at dusk", "negativePrompt": "blurry", "width": 64, "height": 64,
            "steps": 3, "CFGScale": 7, "seed": 1234, "scheduler": "Euler a", "outputType": "base64Data",
            "outputFormat": "PNG"}
    item.update(changes)
    return item
