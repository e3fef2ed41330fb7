"""`web_search` (SPEC §5.3) with the Brave Search API: `GET {base_url}/<kind>/search`.

The key goes in `X-Subscription-Token` and never into a result or an error. Brave answers a bad
key with 422 `SUBSCRIPTION_TOKEN_INVALID` (401/403 at some proxies), a spent rate or quota with
429 and `X-RateLimit-Reset` (seconds until each window resets, e.g. `1, 1419704`).
"""

import asyncio
import html
import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Literal

import httpx
import msgspec
from msgspec import Meta

from services.tools.results import Result, ToolError
from services.tools.workspace import ToolCall
from shared.tools_config import SearchConfig

SearchKind = Literal["web", "news", "images", "videos"]
Freshness = Literal["day", "week", "month", "year"]
BRAVE_FRESHNESS: dict[Freshness, str] = {"day": "pd", "week": "pw", "month": "pm", "year": "py"}
KEY_REFUSED_CODES = ("SUBSCRIPTION_TOKEN_INVALID", "SUBSCRIPTION_TOKEN_MISSING")
_TAG = re.compile(r"<[^>]+>")  # Brave marks matched words with <strong> in descriptions


class WebSearchArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Search the web with Brave Search: titles, URLs and short descriptions of the hits (read a
    page with web_fetch). `kind` picks web pages, news, images or videos; `freshness` keeps only
    what was published in the last day, week, month or year (not for images)."""

    query: Annotated[str, Meta(min_length=1, max_length=400, description="the search terms")]
    kind: Annotated[SearchKind, Meta(description="what to search for (default web)")] = "web"
    max_results: Annotated[
        int, Meta(ge=1, le=20, description="how many results to return (default 8)")
    ] = 8
    freshness: Annotated[
        Freshness | None, Meta(description="only results from the last day, week, month or year")
    ] = None


class Hit(Result, frozen=True, kw_only=True):
    title: str
    url: str
    description: str
    age: str | None = None  # as Brave words it: "3 days ago"
    thumbnail: str | None = None  # a URL


class WebSearchResult(Result, frozen=True, kw_only=True):
    query: str
    kind: SearchKind
    results: list[Hit]


class _Thumbnail(msgspec.Struct, frozen=True):
    src: str = ""


class _ImageProperties(msgspec.Struct, frozen=True):
    url: str = ""  # the image itself (the result's `url` is the page it is on)


class _Item(msgspec.Struct, frozen=True):
    """One result of any kind, as Brave sends it (fields it leaves out stay empty)."""

    title: str = ""
    url: str = ""
    description: str = ""
    age: str | None = None
    thumbnail: _Thumbnail | None = None
    properties: _ImageProperties | None = None  # images only
    source: str = ""  # images only: the site


class _Section(msgspec.Struct, frozen=True):
    results: list[_Item] = []


class _WebAnswer(msgspec.Struct, frozen=True):
    web: _Section | None = None  # absent when nothing matched


class _ErrorModel(msgspec.Struct, frozen=True):
    code: str = ""
    detail: str = ""


class _ErrorAnswer(msgspec.Struct, frozen=True):
    error: _ErrorModel | None = None
    errors: list[_ErrorModel] = []  # the form Brave's API reference shows


_WEB: msgspec.json.Decoder[_WebAnswer] = msgspec.json.Decoder(_WebAnswer)
_LISTED: msgspec.json.Decoder[_Section] = msgspec.json.Decoder(_Section)
_ERROR: msgspec.json.Decoder[_ErrorAnswer] = msgspec.json.Decoder(_ErrorAnswer)


async def web_search(args: WebSearchArgs, call: ToolCall) -> WebSearchResult:
    config = call.runner.settings.search
    if config is None:
        raise ToolError(
            "unavailable", "web_search is not configured; the operator adds a [search] section"
        )
    if args.freshness is not None and args.kind == "images":
        raise ToolError("invalid_arguments", "freshness does not apply to images; leave it out")
    try:
        async with asyncio.timeout(config.timeout_s):
            response = await fetch(config, args)
    except (TimeoutError, httpx.TimeoutException):
        raise ToolError(
            "timed_out", f"Brave Search did not answer within {config.timeout_s:g} s"
        ) from None
    except httpx.HTTPError as exc:
        message = f"cannot reach Brave Search at {config.base_url}: {exc}"
        raise ToolError("failed", message) from None
    if response.status_code != httpx.codes.OK:
        raise refusal(response, config.api_key)
    items = parse(response.content, args.kind)
    hits = [hit(item, args.kind) for item in items if item.url][: args.max_results]
    return WebSearchResult(query=args.query, kind=args.kind, results=hits)


async def fetch(config: SearchConfig, args: WebSearchArgs) -> httpx.Response:
    params: dict[str, str | int] = {"q": args.query, "count": args.max_results}
    if args.freshness is not None:
        params["freshness"] = BRAVE_FRESHNESS[args.freshness]
    headers = {"Accept": "application/json", "X-Subscription-Token": config.api_key}
    timeout = httpx.Timeout(config.timeout_s)
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await client.get(
            f"{config.base_url.rstrip('/')}/{args.kind}/search", params=params, headers=headers
        )


def parse(body: bytes, kind: SearchKind) -> list[_Item]:
    """The result items of a 200 answer; an answer in another shape is a failure."""
    try:
        if kind == "web":
            section = _WEB.decode(body).web
            return section.results if section is not None else []
        return _LISTED.decode(body).results
    except msgspec.DecodeError as exc:
        raise ToolError("failed", f"Brave Search answered in an unexpected form: {exc}") from None


def hit(item: _Item, kind: SearchKind) -> Hit:
    thumbnail = item.thumbnail.src if item.thumbnail is not None and item.thumbnail.src else None
    if kind == "images":
        image = item.properties.url if item.properties is not None else ""
        return Hit(
            title=plain(item.title),
            url=image or item.url,
            description=f"on {item.url}" if image else item.source,
            thumbnail=thumbnail,
        )
    return Hit(
        title=plain(item.title),
        url=item.url,
        description=plain(item.description),
        age=item.age or None,
        thumbnail=thumbnail,
    )


def plain(text: str) -> str:
    """Brave's snippet without its markup: tags dropped, entities decoded."""
    return html.unescape(_TAG.sub("", text))


def refusal(response: httpx.Response, api_key: str) -> ToolError:
    """The error for a non-200 answer, worded for the model; the key is never repeated."""
    status = response.status_code
    code, detail = error_of(response.content)
    detail = detail.replace(api_key, "***") if detail else ""
    said = f": {detail}" if detail else ""
    if status in (401, 403) or code in KEY_REFUSED_CODES:
        return ToolError(
            "unavailable",
            f"Brave Search refused the API key (HTTP {status}); the operator checks search.api_key",
        )
    if status == httpx.codes.TOO_MANY_REQUESTS:
        wait_s = retry_after_s(response.headers)
        when = f"try again in {waiting_time(wait_s)}" if wait_s is not None else "try again later"
        return ToolError("unavailable", f"Brave Search is rate-limited (HTTP 429){said}; {when}")
    return ToolError("failed", f"Brave Search failed (HTTP {status}){said}")


def error_of(body: bytes) -> tuple[str, str]:
    """Brave's error code and detail, as far as the body gives them."""
    try:
        answer = _ERROR.decode(body)
    except msgspec.DecodeError:
        return "", ""
    found = answer.error or (answer.errors[0] if answer.errors else None)
    return (found.code, found.detail) if found is not None else ("", "")


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds until a retry may work: `Retry-After` (seconds or a date), else the reset of the
    exhausted `X-RateLimit-Reset` window (Brave's per-second, then per-month)."""
    given = seconds_from_retry_after(headers.get("retry-after", "").strip())
    if given is not None:
        return given
    resets = numbers(headers.get("x-ratelimit-reset", ""))
    remaining = numbers(headers.get("x-ratelimit-remaining", ""))
    exhausted = [reset for reset, left in zip(resets, remaining, strict=False) if left <= 0]
    if exhausted:
        return max(exhausted)
    return resets[0] if resets else None


def seconds_from_retry_after(value: str) -> float | None:
    """`Retry-After` in seconds: it gives seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        until = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if until.tzinfo is None:  # `-0000`: UTC by RFC 5322
        until = until.replace(tzinfo=UTC)
    return max(0.0, (until - datetime.now(UTC)).total_seconds())


def numbers(header: str) -> list[float]:
    """`1, 1419704` as numbers; an unreadable header gives none."""
    try:
        return [float(part) for part in header.split(",") if part.strip()]
    except ValueError:
        return []


def waiting_time(seconds: float) -> str:
    """A wait as a person says it: `1 s`, `5 min`, `3 h`, `17 days` (rounded up)."""
    if seconds < 120:
        return f"{max(1, math.ceil(seconds))} s"
    if seconds < 7200:
        return f"{math.ceil(seconds / 60)} min"
    if seconds < 172_800:
        return f"{math.ceil(seconds / 3600)} h"
    return f"{math.ceil(seconds / 86_400)} days"
