"""Small helpers to talk to a live registry in tests."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import torch
from safetensors.torch import save as save_safetensors

from tests.integration.servers import Server


def publish(server: Server, data: bytes, id: str, filename: str = "emb.safetensors", token: str | None = None,
            **meta: Any) -> httpx.Response:
    headers = server.headers(token) if token != "" else {}
    return httpx.post(f"{server.url}/api/v1/embeddings", headers=headers, timeout=60,
                      files={"file": (filename, data)}, data={"metadata": json.dumps({"id": id, **meta})})


def get(server: Server, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=30, **kwargs)


def resolve(server: Server, refs: list[str]) -> list[dict[str, Any]]:
    response = httpx.post(f"{server.url}/api/v1/resolve", json={"refs": refs}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def random_embedding(rows: int = 2, width: int = 768, seed: int = 0) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    return save_safetensors({"emb_params": torch.randn(rows, width, generator=generator)})


def sdxl_embedding(rows: int = 2, seed: int = 0) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    return save_safetensors({"clip_l": torch.randn(rows, 768, generator=generator),
                             "clip_g": torch.randn(rows, 1280, generator=generator)})


def torch_file(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """The first truthy result of ``check`` within ``timeout`` seconds (download counts are
    written in batches, a fifth of a second apart on test servers); fails with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"still {result!r} after {timeout} s"
            return result
        time.sleep(0.05)
