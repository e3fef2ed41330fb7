"""What every scripted fake of an HTTP API shares: an aiohttp server on 127.0.0.1 with a random
port, a script of steps each request takes the next of, a record of what went wrong, and SSE."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar

from aiohttp import web

S = TypeVar("S")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class Runs(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assert_done(self) -> None: ...


Served = TypeVar("Served", bound=Runs)


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """`app` on 127.0.0.1 at a free port. A client that gives up cancels its handler, so a
    delayed answer never holds up the exit."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


class ScriptedServer(Generic[S]):
    """One POST route answered from a script; any other request is recorded as a failure."""

    title = "fake server"  # how `assert_done` names it
    route = "/"

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.failures: list[str] = []
        self._steps: list[S] = []
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def script(self, *steps: S) -> None:
        """Append steps; each request consumes the next one."""
        self._steps.extend(steps)

    def next_step(self, number: int) -> S | None:
        """The step for request `number`; None (recorded) when the script has run out."""
        if self._steps:
            return self._steps.pop(0)
        self.failures.append(f"request {number} came past the end of the script")
        return None

    def assert_done(self) -> None:
        """Fail if a scripted step was never used or an unexpected request came."""
        problems = list(self.failures)
        if self._steps:
            problems.append(f"{len(self._steps)} scripted step(s) unused: {self._steps!r}")
        if problems:
            raise AssertionError(f"{self.title}: " + "; ".join(problems))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.route, self.handle)
        for route, handler in self.more_routes():
            app.router.add_post(route, handler)
        for route, handler in self.read_routes():
            app.router.add_get(route, handler)
        app.router.add_route("*", "/{tail:.*}", self._unexpected)
        self._runner, self._port = await serve(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError  # each fake answers its own route

    def more_routes(self) -> list[tuple[str, Handler]]:
        """Further POST routes outside the script (a Files API), none by default."""
        return []

    def read_routes(self) -> list[tuple[str, Handler]]:
        """GET routes outside the script (a model list), none by default."""
        return []

    def error(self, status: int, message: str) -> web.StreamResponse:
        """An error answer in the API's own body format."""
        raise NotImplementedError

    async def _unexpected(self, request: web.Request) -> web.StreamResponse:
        self.failures.append(f"unexpected request {request.method} {request.path}")
        return self.error(404, f"no route for {request.method} {request.path}")


async def write_sse(request: web.Request, frames: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    for frame in frames:
        await response.write(frame)
    await response.write_eof()
    return response


@asynccontextmanager
async def serving(server: Served) -> AsyncIterator[Served]:
    """The fake running; on a clean exit, `assert_done()` checks the script was followed."""
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    server.assert_done()


def pieces(text: str, count: int = 3) -> list[str]:
    """`text` in about `count` deltas, as the APIs stream it."""
    size = max(1, -(-len(text) // count))
    return [text[start : start + size] for start in range(0, len(text), size)]
