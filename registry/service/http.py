"""HTTP behaviour every route shares: HEAD served by the GET handler, a read timeout for request
bodies, and the security headers of the HTML pages."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from pseudoword.registry.core.errors import RequestTimeout
from pseudoword.registry.service.downloads import HEAD_MARK

#: For the HTML pages: styles, the copy script and images from the registry only (no inline
#: script, nothing from elsewhere), nothing framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
#: On every answer: browsers must not guess a type (a download is never run as a page).
ALL_HEADERS = {"X-Content-Type-Options": "nosniff"}


class RegistryApp(Litestar):
    """Litestar, plus HEAD on every GET route (RFC 9110: a HEAD is a GET without the body).

    The request reaches the GET handler marked with ``HEAD_MARK`` (downloads then neither read
    the blob nor count); uvicorn, which still sees HEAD, sends the headers only."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET", HEAD_MARK: True}  # type: ignore[typeddict-unknown-key]
        await super().__call__(scope, receive, send)


def read_timeout_middleware(timeout: float) -> Any:
    """A request's body must arrive whole within ``timeout`` seconds, else 408 ``request_timeout``:
    a slow client cannot hold a worker for long."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            body_done = False

            async def timed_receive() -> Message:
                nonlocal body_done
                if body_done:  # after the body: waiting for a disconnect is not a slow client
                    return await receive()
                try:
                    message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
                except TimeoutError:
                    raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
                body_done = message["type"] != "http.request" or not message.get("more_body", False)
                return message

            await app(scope, timed_receive, send)

        return middleware

    return factory
