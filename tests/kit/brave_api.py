"""A fake Brave Search API speaking its real JSON for web, news, images and videos.

    async with brave_api(token="BSA-test") as fake:  # a clean exit runs assert_done()
        config = SearchConfig(api_key="BSA-test", base_url=fake.base_url)
        fake.fail_next(rate_limited(reset="1, 1419704", remaining="0, 999"))
        fake.requests  # every search: its kind, query parameters and headers

`GET /res/v1/<kind>/search` answers `min(count, available)` results for any query, numbered from
1: `result_url(kind, n)` is the n-th one's URL (the image itself for images, whose page is
`page_url`). Even-numbered results carry a thumbnail and an age, odd ones do not, as Brave
leaves them out. A wrong `X-Subscription-Token` gets Brave's 422 `SUBSCRIPTION_TOKEN_INVALID`;
a request Brave would refuse (no token, a parameter it does not take, `count` out of range, a bad
`freshness`) gets its 422 `VALIDATION` and is recorded in `failures`. `hold()` makes searches wait
unanswered until the fake stops (for time limits, without sleeping).
"""

import asyncio
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Final, Literal

import msgspec
from aiohttp import web

from tests.kit.scripted_http import serve, serving

Kind = Literal["web", "news", "images", "videos"]
DEFAULT_TOKEN: Final = "BSA-stellaclaw-test-key"
MAX_COUNT: Final[dict[str, int]] = {"web": 20, "news": 50, "images": 200, "videos": 50}
FRESHNESS: Final = ("pd", "pw", "pm", "py")
PARAMS: Final = {"q", "count", "freshness", "offset", "country", "search_lang", "safesearch"}
_ENCODER = msgspec.json.Encoder()


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """One search as it came."""

    kind: str
    params: dict[str, str]
    headers: dict[str, str]  # names lower-cased


class Fault(msgspec.Struct, frozen=True, kw_only=True):
    """An error answer for the next search, in Brave's error body."""

    status: int
    code: str
    detail: str
    headers: dict[str, str] = {}


def rate_limited(
    *, retry_after: str | None = None, reset: str = "1, 1419704", remaining: str = "0, 999"
) -> Fault:
    """Brave's 429 for a spent per-second window, with its rate-limit headers."""
    headers = {
        "X-RateLimit-Limit": "1, 15000",
        "X-RateLimit-Policy": "1;w=1, 15000;w=2592000",
        "X-RateLimit-Remaining": remaining,
        "X-RateLimit-Reset": reset,
    }
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Fault(
        status=429,
        code="RATE_LIMITED",
        detail="Request rate limit exceeded for plan.",
        headers=headers,
    )


def result_url(kind: str, number: int) -> str:
    if kind == "images":
        return f"https://img.example.com/{number}.jpg"
    return f"https://example.com/{kind}/{number}"


def page_url(kind: str, number: int) -> str:
    return f"https://example.com/{kind}/{number}"


def thumbnail_url(kind: str, number: int) -> str:
    return f"https://imgs.search.brave.com/{kind}/{number}.jpg"


class BraveServer:
    """Brave's search endpoints on 127.0.0.1 and a free port."""

    title = "fake Brave Search API"

    def __init__(self, *, token: str = DEFAULT_TOKEN, available: int = 30) -> None:
        self.token = token
        self.available = available  # results any query has
        self.requests: list[Received] = []
        self.failures: list[str] = []
        self._faults: list[Fault] = []
        self._released = asyncio.Event()
        self._is_holding = False
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/res/v1"

    def fail_next(self, *faults: Fault) -> None:
        """Answer the next searches with these errors, in order."""
        self._faults.extend(faults)

    def hold(self) -> None:
        """Leave every search from now on unanswered until the fake stops."""
        self._is_holding = True

    def assert_done(self) -> None:
        problems = list(self.failures)
        if self._faults:
            problems.append(f"{len(self._faults)} fault(s) never answered: {self._faults!r}")
        if problems:
            raise AssertionError(f"{self.title}: " + "; ".join(problems))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/res/v1/{kind:web|news|images|videos}/search", self.search)
        app.router.add_route("*", "/{tail:.*}", self._unexpected)
        self._runner, self._port = await serve(app)

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def search(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        params = dict(request.query)
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(Received(kind=kind, params=params, headers=headers))
        token = headers.get("x-subscription-token")
        if token is None:
            self.failures.append(f"{kind} search without X-Subscription-Token")
            return validation_error("header", "x-subscription-token", "Field required")
        if token != self.token:
            detail = "The provided subscription token is invalid."
            meta = {"component": "authentication"}
            return error(422, "SUBSCRIPTION_TOKEN_INVALID", detail, meta=meta)
        refusal = refused(kind, params)
        if refusal is not None:
            self.failures.append(f"{kind} search refused: {refusal[1]} {refusal[2]}")
            return validation_error("query", *refusal[1:])
        if self._faults:
            fault = self._faults.pop(0)
            return error(fault.status, fault.code, fault.detail, headers=fault.headers)
        if self._is_holding:
            await self._released.wait()
        count = min(int(params["count"]) if "count" in params else 20, self.available)
        body = answer(kind, params["q"], count)
        return web.Response(body=_ENCODER.encode(body), content_type="application/json")

    async def _unexpected(self, request: web.Request) -> web.StreamResponse:
        self.failures.append(f"unexpected request {request.method} {request.path}")
        return error(404, "NOT_FOUND", f"no route for {request.method} {request.path}")


def refused(kind: str, params: dict[str, str]) -> tuple[str, str, str] | None:
    """Why Brave would refuse these query parameters: (kind, parameter, message), else None."""
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        return ("query", unknown[0], "Extra inputs are not permitted")
    query = params.get("q", "")
    if not 1 <= len(query) <= 400:
        return ("query", "q", "String should have between 1 and 400 characters")
    count = params.get("count", "20")
    if not count.isdigit() or not 1 <= int(count) <= MAX_COUNT[kind]:
        return ("query", "count", f"Input should be between 1 and {MAX_COUNT[kind]}")
    freshness = params.get("freshness")
    if freshness is not None and (kind == "images" or freshness not in FRESHNESS):
        return ("query", "freshness", f"Input {freshness!r} is not accepted here")
    return None


def error(
    status: int,
    code: str,
    detail: str,
    *,
    meta: Mapping[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Brave's error body (`{"type": "ErrorResponse", "error": {...}}`)."""
    body = {
        "type": "ErrorResponse",
        "error": {
            "id": "5d832250-9396-4f6e-b84a-2a1fe524cd7d",
            "status": status,
            "code": code,
            "detail": detail,
            "meta": meta or {"component": "rate_limiter"},
        },
        "time": int(time.time()),
    }
    return web.Response(
        status=status,
        body=_ENCODER.encode(body),
        content_type="application/json",
        headers=headers or {},
    )


def validation_error(where: str, name: str, message: str) -> web.Response:
    found = {"type": "value_error", "loc": [where, name], "msg": message}
    detail = "Unable to validate request parameter(s)"
    return error(422, "VALIDATION", detail, meta={"errors": [found]})


def answer(kind: str, query: str, count: int) -> dict[str, object]:
    """Brave's answer with `count` results, in the shape of each endpoint."""
    numbers = range(1, count + 1)
    about = {"original": query, "spellcheck_off": False, "show_strict_warning": False}
    if kind == "web":
        results = [web_result(query, number) for number in numbers]
        body: dict[str, object] = {"type": "search", "query": about}
        if results:  # Brave leaves `web` out when nothing matched
            body["web"] = {"type": "search", "results": results, "family_friendly": True}
        return body
    make = {"news": news_result, "images": image_result, "videos": video_result}[kind]
    body = {"type": kind, "query": about, "results": [make(query, n) for n in numbers]}
    if kind != "news":
        body["extra"] = {"might_be_offensive": False}
    return body


def meta_url(kind: str, number: int) -> dict[str, str]:
    return {
        "scheme": "https",
        "netloc": "example.com",
        "hostname": "example.com",
        "favicon": "https://imgs.search.brave.com/favicon/example.com",
        "path": f"\u203a {kind} \u203a {number}",  # Brave's breadcrumb
    }


def dated(kind: str, number: int, age: str) -> dict[str, object]:
    """The fields Brave gives only some results: an age and a thumbnail (even numbers here)."""
    if number % 2:
        return {}
    thumbnail = {"src": thumbnail_url(kind, number), "original": page_url(kind, number)}
    return {"age": age, "page_age": "2025-01-02T08:00:00", "thumbnail": thumbnail}


def web_result(query: str, number: int) -> dict[str, object]:
    return {
        "type": "search_result",
        "subtype": "generic",
        "title": f"<strong>{query}</strong> guide {number}",
        "url": result_url("web", number),
        "description": f"All about <strong>{query}</strong> &amp; more, part {number}.",
        "is_source_local": False,
        "is_source_both": False,
        "language": "en",
        "family_friendly": True,
        "profile": {"name": "Example", "long_name": "example.com", "url": page_url("web", 0)},
        "meta_url": meta_url("web", number),
        **dated("web", number, "January 2, 2025"),
    }


def news_result(query: str, number: int) -> dict[str, object]:
    return {
        "type": "news_result",
        "title": f"{query} in the news {number}",
        "url": result_url("news", number),
        "description": f"What happened with {query}, story {number}.",
        "breaking": False,
        "page_fetched": "2025-01-02T09:00:00Z",
        "meta_url": meta_url("news", number),
        **dated("news", number, "2 hours ago"),
    }


def image_result(query: str, number: int) -> dict[str, object]:
    return {
        "type": "image_result",
        "title": f"{query} picture {number}",
        "url": page_url("images", number),
        "source": "example.com",
        "page_fetched": "2025-01-02T09:00:00Z",
        "thumbnail": {"src": thumbnail_url("images", number), "width": 500, "height": 375},
        "properties": {
            "url": result_url("images", number),
            "placeholder": thumbnail_url("placeholder", number),
            "width": 1600,
            "height": 1200,
        },
        "meta_url": meta_url("images", number),
        "confidence": "high",
    }


def video_result(query: str, number: int) -> dict[str, object]:
    return {
        "type": "video_result",
        "title": f"{query} explained {number}",
        "url": result_url("videos", number),
        "description": f"A video about {query}, episode {number}.",
        "page_fetched": "2025-01-02T09:00:00Z",
        "video": {"duration": "12:34", "creator": "Example", "publisher": "YouTube"},
        "meta_url": meta_url("videos", number),
        **dated("videos", number, "March 3, 2024"),
    }


def brave_api(
    *, token: str = DEFAULT_TOKEN, available: int = 30
) -> AbstractAsyncContextManager[BraveServer]:
    """A running fake; on a clean exit, `assert_done()`."""
    return serving(BraveServer(token=token, available=available))
