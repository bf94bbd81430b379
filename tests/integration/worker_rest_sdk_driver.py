"""Drives Runware's REST SDK (``runware-sdk`` from PyPI, in its own venv: scripts/runware_sdk_env.sh)
against a worker. Run by that venv's python, never imported by the tests (that venv has no
pseudoword): reads ``{"url", "key", "calls": [{"kind": "run"|"model_search", "params": {...}}]}``
from stdin and prints one JSON document, a result or ``{"error": {...}}`` per call."""

import asyncio
import json
import sys

from runware import Runware


async def main() -> None:
    spec = json.loads(sys.stdin.read())
    out = []
    async with Runware(api_key=spec["key"], transport="rest", http_base_url=spec["url"], max_retries=0,
                       timeout=120_000) as client:
        for call in spec["calls"]:
            try:
                if call["kind"] == "run":
                    result = await client.run(call["params"])
                else:
                    result = await client.model_search(call["params"])
                out.append({"result": result})
            except Exception as exc:  # noqa: BLE001 - reported to the test, which asserts on it
                out.append({"error": {"type": type(exc).__name__, "code": getattr(exc, "code", None),
                                      "message": str(exc), "parameter": getattr(exc, "parameter", None)}})
    print(json.dumps(out))


asyncio.run(main())
