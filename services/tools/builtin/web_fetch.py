"""`web_fetch` (SPEC §5.3): one http(s) request, redirects followed and every hop checked by
`net_guard`, at most 8 MiB of the body read, and the content shaped for the model.

A follow-up cuts the wait short (SPEC §3.5): a fetch has no work worth keeping, so it is dropped
and the call fails `cancelled`.
"""

import asyncio
import codecs
from typing import Annotated, Literal

import httpx
import msgspec
from msgspec import Meta

from services.tools import net_guard
from services.tools.builtin import readable
from services.tools.results import Result, ToolError, cut_middle
from services.tools.workspace import ToolCall

MAX_BODY_BYTES = 8 << 20
SNIFF_BYTES = 8192  # what is looked at to tell text from binary when the type does not say
SLACK_S = 10.0  # beyond timeout_s, before the runner's own limit cuts in
MARKER = "…[{omitted} chars omitted]…"
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-www-form-urlencoded",
        "application/x-sh",
        "application/sql",
        "application/yaml",
        "application/toml",
    }
)
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
Format = Literal["auto", "text", "raw"]


class WebFetchArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fetch a URL (http or https) and return its content: HTML as readable text with its links,
    JSON pretty-printed, other text as is. Redirects are followed (at most 10); at most 8 MiB of
    the body is read. Binary content is not returned, only its size: save it with
    file_download_start. Loopback and private addresses are refused unless the operator allows
    them."""

    url: Annotated[str, Meta(min_length=1, max_length=8192, description="an http or https URL")]
    method: Annotated[
        Literal["GET", "HEAD"], Meta(description="HEAD asks for the status and headers only")
    ] = "GET"
    timeout_s: Annotated[
        float, Meta(ge=1, le=120, description="seconds for the whole fetch, redirects included")
    ] = 30.0
    max_chars: Annotated[
        int, Meta(ge=1, le=100_000, description="longer content keeps its head and tail")
    ] = 20_000
    format: Annotated[
        Format,
        Meta(
            description="auto: HTML as readable text, JSON pretty-printed, other text as is; "
            "text: HTML as readable text, other text as is; raw: the body as it came"
        ),
    ] = "auto"
    headers: Annotated[
        dict[str, str], Meta(description="request headers, e.g. Accept or Authorization")
    ] = msgspec.field(default_factory=dict)


class WebFetchResult(Result, frozen=True, kw_only=True):
    status: int
    url: str  # after the redirects
    content_type: str
    content: str | None = None  # absent for binary content
    truncated: bool  # cut to max_chars, or the body went past 8 MiB
    total_chars: int | None = None  # of the content before the cut
    links: list[str] | None = None  # absolute URLs from HTML, at most 50
    binary: bool = False
    size_bytes: int | None = None  # binary content's size (Content-Length when the server sent it)


def time_limit_s(args: WebFetchArgs) -> float:
    """The call's hard limit: the fetch's own timeout and some slack."""
    return args.timeout_s + SLACK_S


async def web_fetch(args: WebFetchArgs, call: ToolCall) -> WebFetchResult:
    fetch = net_guard.Fetch(
        url=args.url,
        method=args.method,
        headers=args.headers,
        allow_private=call.runner.settings.tools.allow_private_network,
    )
    work = asyncio.ensure_future(fetched(fetch, args))
    cut = asyncio.ensure_future(call.cut_short.wait())
    try:
        await asyncio.wait({work, cut}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cut.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait({work})
    if work.cancelled():
        message = f"the fetch of {args.url} was cut short by a follow-up; fetch it again if needed"
        raise ToolError("cancelled", message)
    return work.result()


async def fetched(fetch: net_guard.Fetch, args: WebFetchArgs) -> WebFetchResult:
    """The request sent, its body read (up to 8 MiB) and shaped."""
    try:
        async with (
            asyncio.timeout(args.timeout_s),
            net_guard.client(args.timeout_s) as http,
            net_guard.opened(http, fetch) as reached,
        ):
            body, is_cut = await read_body(reached.response)
    except TimeoutError:
        message = f"{args.url} did not answer within {args.timeout_s:g} s"
        raise ToolError("timed_out", message) from None
    except httpx.HTTPError as exc:  # the body broke off after the headers
        raise net_guard.failure(exc, args.url) from None
    return shaped(reached, body, is_cut=is_cut, args=args)


async def read_body(response: httpx.Response) -> tuple[bytes, bool]:
    """The (decompressed) body up to MAX_BODY_BYTES, and whether there was more."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            return bytes(data[:MAX_BODY_BYTES]), True
    return bytes(data), False


def shaped(
    reached: net_guard.Reached, body: bytes, *, is_cut: bool, args: WebFetchArgs
) -> WebFetchResult:
    """The result for the model: binary left out, text converted as `format` says and cut."""
    response = reached.response
    content_type = response.headers.get("Content-Type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    size = content_length(response)
    answer = WebFetchResult(
        status=response.status_code, url=reached.url, content_type=content_type, truncated=is_cut
    )
    if args.method == "HEAD":
        return msgspec.structs.replace(answer, content="", size_bytes=size)
    charset = charset_of(response)
    if is_binary(mime, body[:SNIFF_BYTES], charset):
        return msgspec.structs.replace(answer, binary=True, size_bytes=size or len(body))
    text, links = converted(body.decode(charset, errors="replace"), mime, args.format, reached.url)
    is_long = len(text) > args.max_chars
    return msgspec.structs.replace(
        answer,
        content=cut_middle(text, args.max_chars, MARKER),
        truncated=is_cut or is_long,
        total_chars=len(text) if is_long else None,
        links=links or None,
    )


def converted(text: str, mime: str, form: Format, url: str) -> tuple[str, list[str]]:
    """The content as `form` asks, and the links of an HTML page."""
    if form == "raw":
        return text, []
    if mime in HTML_TYPES or (not mime and looks_like_html(text)):
        found = readable.page(text, url)
        return found.text, found.links
    if form == "auto" and (mime == "application/json" or mime.endswith("+json")):
        try:
            return msgspec.json.format(text, indent=2), []
        except msgspec.DecodeError:  # not JSON after all, or cut at 8 MiB: as it came
            return text, []
    return text, []


def looks_like_html(text: str) -> bool:
    return text.lstrip()[:15].lower().startswith(("<!doctype html", "<html"))


def is_binary(mime: str, head: bytes, charset: str) -> bool:
    """Text types are text; anything else is text if its first bytes decode and hold no NUL."""
    if mime.startswith("text/") or mime in TEXT_TYPES or mime.endswith(("+json", "+xml")):
        return False
    if b"\0" in head:
        return True
    try:
        codecs.getincrementaldecoder(charset)().decode(head)  # a cut last character is fine
    except UnicodeDecodeError:
        return True
    return False


def charset_of(response: httpx.Response) -> str:
    """The charset the server named, if Python knows it; else UTF-8."""
    named = response.charset_encoding or "utf-8"
    try:
        return codecs.lookup(named).name
    except LookupError:
        return "utf-8"


def content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None
