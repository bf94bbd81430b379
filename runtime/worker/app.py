"""The Litestar app: ``POST /v1`` (REST task arrays), WebSocket ``/v1``, ``GET /images/{name}``
(URL outputs), ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Litestar, MediaType, Request, Response, get, post, websocket
from litestar.connection import WebSocket
from litestar.exceptions import HTTPException, WebSocketDisconnect
from litestar.params import Parameter
from litestar.response import File

from pseudoword.runtime.worker.images import MEDIA_TYPES
from pseudoword.runtime.worker.protocol import TaskError, envelope
from pseudoword.runtime.worker.service import Worker

log = logging.getLogger("pseudoword.worker")


def _worker(connection: Any) -> Worker:
    return connection.app.state.worker  # type: ignore[no-any-return]


def _base_url(worker: Worker, url: str) -> str:
    if worker.settings.public_url:
        return worker.settings.public_url
    url = url.rstrip("/")
    if url.startswith("ws"):
        url = "http" + url[2:]
    return url


async def _until_disconnect(request: Request[Any, Any, Any]) -> None:
    """Returns when the client has gone (the ASGI server reports ``http.disconnect``)."""
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


@post("/v1", status_code=200, media_type=MediaType.JSON)
async def rest(request: Request[Any, Any, Any]) -> Response[bytes]:
    worker = _worker(request)
    limit = worker.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        error = TaskError("payloadTooLarge", f"the request is {declared} bytes; at most {limit}", status=413)
        return Response(json.dumps(envelope([], [error])).encode(), status_code=413, media_type=MediaType.JSON)
    body = await request.body()
    work = asyncio.ensure_future(worker.rest(body, request.headers.get("authorization"),
                                             _base_url(worker, str(request.base_url))))
    gone = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not work.done():  # the client left: cancel its queued work, answer nobody
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        return Response(b"", status_code=499)
    status, answer = work.result()
    return Response(json.dumps(answer).encode(), status_code=status, media_type=MediaType.JSON)


@websocket("/v1")
async def ws(socket: WebSocket[Any, Any, Any]) -> None:
    worker = _worker(socket)
    await socket.accept()

    async def receive() -> str | bytes | None:
        try:
            return await socket.receive_data(mode="text")
        except WebSocketDisconnect:
            return None

    async def send(message: dict[str, Any]) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await socket.send_text(json.dumps(message))

    await worker.connection(receive, send, _base_url(worker, str(socket.base_url)))
    with contextlib.suppress(Exception):
        await socket.close()


@get("/images/{name:str}", media_type="application/octet-stream")
async def image(request: Request[Any, Any, Any], name: Annotated[str, Parameter(max_length=64)]) -> Any:
    path = _worker(request).images.get(name)
    if path is None:
        error = TaskError("notFound", "no such image (unknown, or past its time to live)", status=404)
        return Response(json.dumps(envelope([], [error])).encode(), status_code=404, media_type=MediaType.JSON)
    return File(path, media_type=MEDIA_TYPES[path.suffix[1:]], content_disposition_type="inline",
                headers={"Cache-Control": "private, max-age=60"})


@get("/healthz", media_type=MediaType.JSON)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", media_type=MediaType.JSON)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    worker = _worker(request)
    queues = {air: {"depth": queue.depth(), "alive": queue.alive} for air, queue in worker.queues.items()}
    ready = not worker.closing and all(q["alive"] for q in queues.values())
    return Response({"status": "ready" if ready else "unavailable", "models": queues},
                    status_code=200 if ready else 503)


@get("/metrics", media_type="text/plain; version=0.0.4")
async def metrics(request: Request[Any, Any, Any]) -> bytes:
    return _worker(request).metrics.render()


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own refusals (a chunked body over the limit, an unknown route, a wrong method)
    in Runware's error shape too."""
    status = exc.status_code
    code = {404: "notFound", 405: "methodNotAllowed", 413: "payloadTooLarge"}.get(status, "invalidRequest")
    error = TaskError(code, str(exc.detail), status=status)
    return Response(json.dumps(envelope([], [error])).encode(), status_code=status, media_type=MediaType.JSON)


def create_app(worker: Worker) -> Litestar:
    """The app around ``worker``; its lifespan sweeps expired URL images and, at shutdown, drains
    the queues (graceful) and stops the worker's threads."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(worker.sweep_forever())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            log.info("worker stopping: no new tasks, queued ones may finish")
            await asyncio.get_running_loop().run_in_executor(None, worker.close)
            log.info("worker stopped")

    app = Litestar(route_handlers=[rest, ws, image, healthz, readyz, metrics], lifespan=[lifespan],
                   request_max_body_size=worker.settings.max_body_bytes, openapi_config=None,
                   exception_handlers={HTTPException: _http_error})
    app.state.worker = worker
    return app
