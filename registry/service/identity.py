"""``GET /api/v1/whoami``: what the presented token may do, so `pseudoword login` checks a URL and
token before saving them (as ``huggingface-cli login`` asks the Hub's whoami)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from pseudoword.registry.service.api import errors, principal_of, require_token


@get("/api/v1/whoami", guards=[require_token], sync_to_thread=False, tags=["tokens"],
      summary="The token's own scope", responses=errors(401))
def whoami(request: Request[Any, Any, Any]) -> dict[str, Any]:
    principal = principal_of(request)
    return {"token_id": principal.token_id, "source": principal.source, "admin": principal.admin}
