"""A small website on 127.0.0.1 for the web tools: HTML, JSON, text, binary, redirects, a request
that never gets an answer, bodies of any size, and a body held at a gate halfway through, so a
test can watch a download's progress and cancel it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from aiohttp import web

from tests.kit.scripted_http import Handler, serve

CHUNK_BYTES = 64 * 1024
PAGE = """<!doctype html>
<html><head><title>Sample page</title><style>body { color: red }</style>
<script>var hidden = "script text";</script></head>
<body>
<nav><a href="/menu">Menu entry</a></nav>
<header>Site header</header>
<main>
<h1>Hello   <b>world</b></h1>
<p>First paragraph,
   spread over lines. <a href="/notes.txt#top">Notes</a></p>
<ul><li>one</li><li>two</li></ul>
<p><a href="https://example.org/elsewhere">Elsewhere</a> <a href="mailto:a@b.c">mail</a></p>
</main>
<aside>Side note</aside>
<footer>Site footer</footer>
</body></html>
"""
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)


class WebPages:
    """The site; `gate` holds `/gated/<n>` after its first chunk until a test sets it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.stopping = asyncio.Event()
        self.methods: list[str] = []  # of every request, in order
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/page.html", self._page)
        app.router.add_get("/data.json", self._json)
        app.router.add_get("/notes.txt", self._text)
        app.router.add_get("/image.png", self._png)
        app.router.add_get("/headers", self._headers)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/redirect/{hops}", self._redirect)
        app.router.add_get("/loop", self._loop)
        app.router.add_get("/to", self._to)
        app.router.add_get("/stall", self._stall)
        app.router.add_get("/large/{size}", self._large)
        app.router.add_get("/gated/{size}", self._gated)
        app.middlewares.append(self._record)
        self._runner, self._port = await serve(app)

    async def stop(self) -> None:
        self.stopping.set()
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.methods.append(request.method)
        return await handler(request)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    async def _json(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.encode({"name": "stellaclaw", "tags": ["a", "b"]})
        return web.Response(body=body, content_type="application/json")

    async def _text(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="line one\nline two\n", content_type="text/plain")

    async def _png(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=PNG, content_type="image/png")

    async def _headers(self, request: web.Request) -> web.StreamResponse:
        seen = {name.lower(): value for name, value in request.headers.items()}
        return web.Response(body=msgspec.json.encode(seen), content_type="application/json")

    async def _status(self, request: web.Request) -> web.StreamResponse:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}", content_type="text/plain")

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        hops = int(request.match_info["hops"])
        target = f"/redirect/{hops - 1}" if hops > 1 else "/page.html"
        raise web.HTTPFound(target)

    async def _loop(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/loop")

    async def _to(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["url"])

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        await self.stopping.wait()  # the client gives up first; its leaving cancels this
        return web.Response(text="too late")

    async def _large(self, request: web.Request) -> web.StreamResponse:
        """`size` bytes of text; `?length=no` leaves out Content-Length (a chunked body)."""
        size = int(request.match_info["size"])
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        if request.query.get("length") != "no":
            response.content_length = size
        await response.prepare(request)
        await _write(response, size)
        await response.write_eof()
        return response

    async def _gated(self, request: web.Request) -> web.StreamResponse:
        """`size` bytes: the first chunk at once, the rest once `gate` is set."""
        size = int(request.match_info["size"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        await response.write(b"g" * min(CHUNK_BYTES, size))
        await self.gate.wait()
        await _write(response, size - min(CHUNK_BYTES, size))
        await response.write_eof()
        return response


async def _write(response: web.StreamResponse, size: int) -> None:
    for start in range(0, size, CHUNK_BYTES):
        await response.write(b"x" * min(CHUNK_BYTES, size - start))


@asynccontextmanager
async def serving() -> AsyncIterator[WebPages]:
    site = WebPages()
    await site.start()
    try:
        yield site
    finally:
        await site.stop()
