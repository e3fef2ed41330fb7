"""web_fetch per SPEC §5.3 against a real HTTP server on 127.0.0.1: HTML as readable text, JSON,
raw, HEAD, cuts, binary, redirects, time limits and the private-address rule."""

import asyncio
import socket

import msgspec
import pytest

from services.tools.builtin.web_fetch import (
    MAX_BODY_BYTES,
    WebFetchArgs,
    WebFetchResult,
    time_limit_s,
    web_fetch,
)
from services.tools.catalog import decode
from services.tools.context import RunnerContext, Settings
from services.tools.results import ToolError, encode
from shared.tools_config import ToolsConfig
from tests.kit import web_pages
from tests.kit.waiting import eventually
from tests.unit.tools.samples import tool_call


@pytest.fixture
async def site():
    async with web_pages.serving() as served:
        yield served


@pytest.fixture
def call(workdir):
    """A call whose runner allows private addresses: the test site is on loopback."""
    runner = RunnerContext(settings=Settings(tools=ToolsConfig(allow_private_network=True)))
    return msgspec.structs.replace(tool_call(workdir), runner=runner)


async def fetch(call, url: str, **arguments) -> WebFetchResult:
    return await web_fetch(WebFetchArgs(url=url, **arguments), call)


async def failure(call, url: str, **arguments) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await fetch(call, url, **arguments)
    return caught.value


async def test_html_becomes_readable_text_with_absolute_links(call, site):
    result = await fetch(call, site.url("/page.html"))
    assert (result.status, result.url, result.truncated) == (200, site.url("/page.html"), False)
    assert result.content_type == "text/html; charset=utf-8"
    assert result.content == (
        "Sample page\n# Hello world\nFirst paragraph, spread over lines. Notes\n- one\n- two\n"
        "Elsewhere mail"
    )
    assert result.links == [
        site.url("/menu"),
        site.url("/notes.txt"),
        "https://example.org/elsewhere",
    ]


async def test_json_is_pretty_printed_in_auto_and_left_alone_in_text_and_raw(call, site):
    auto = await fetch(call, site.url("/data.json"))
    text = await fetch(call, site.url("/data.json"), format="text")
    assert auto.content == '{\n  "name": "stellaclaw",\n  "tags": [\n    "a",\n    "b"\n  ]\n}'
    assert text.content == '{"name":"stellaclaw","tags":["a","b"]}'
    assert auto.links is None


async def test_raw_gives_the_html_as_it_came(call, site):
    result = await fetch(call, site.url("/page.html"), format="raw")
    assert result.content == web_pages.PAGE
    assert result.links is None


async def test_plain_text_comes_as_is(call, site):
    result = await fetch(call, site.url("/notes.txt"))
    assert (result.content, result.content_type) == (
        "line one\nline two\n",
        "text/plain; charset=utf-8",
    )


async def test_head_asks_for_the_headers_only(call, site):
    result = await fetch(call, site.url("/page.html"), method="HEAD")
    assert (result.status, result.content, result.truncated) == (200, "", False)
    assert result.size_bytes == len(web_pages.PAGE.encode())
    assert site.methods == ["HEAD"]


async def test_long_content_keeps_its_head_and_tail(call, site):
    result = await fetch(call, site.url("/large/1000"), max_chars=100)
    assert result.content == "x" * 40 + "…[900 chars omitted]…" + "x" * 60
    assert (result.truncated, result.total_chars) == (True, 1000)


async def test_the_body_stops_at_8_mib(call, site):
    result = await fetch(call, site.url(f"/large/{MAX_BODY_BYTES + 100_000}"), max_chars=100_000)
    assert (result.truncated, result.total_chars) == (True, MAX_BODY_BYTES)
    assert len(result.content or "") == 100_000 + len(
        f"…[{MAX_BODY_BYTES - 100_000} chars omitted]…"
    )


async def test_binary_content_gives_its_size_and_no_content(call, site):
    result = await fetch(call, site.url("/image.png"))
    assert (result.binary, result.size_bytes, result.content) == (True, len(web_pages.PNG), None)
    assert b'"content"' not in bytes(encode(result))


async def test_an_error_status_is_a_result_the_model_reads(call, site):
    result = await fetch(call, site.url("/status/404"))
    assert (result.status, result.content) == (404, "status 404")


async def test_redirects_are_followed_to_the_final_url(call, site):
    result = await fetch(call, site.url("/redirect/3"))
    assert (result.status, result.url) == (200, site.url("/page.html"))
    assert site.methods == ["GET"] * 4


async def test_more_than_10_redirects_fail(call, site):
    error = await failure(call, site.url("/loop"))
    assert error.kind == "failed"
    assert str(error) == f"stopped after 10 redirects at {site.url('/loop')!r}"
    assert len(site.methods) == 11


async def test_headers_are_sent(call, site):
    result = await fetch(call, site.url("/headers"), headers={"X-Probe": "yes"})
    seen = msgspec.json.decode(result.content or "")
    assert seen["x-probe"] == "yes"
    assert seen["user-agent"].startswith("Mozilla/5.0 (compatible; Stellaclaw")


async def test_a_server_that_does_not_answer_times_out(call, site):
    error = await failure(call, site.url("/stall"), timeout_s=1)
    assert (error.kind, str(error)) == (
        "timed_out",
        f"{site.url('/stall')} did not answer within 1 s",
    )


async def test_a_refused_connection_is_a_readable_failure(call):
    with socket.socket() as probe:  # a port nothing listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await failure(call, f"http://127.0.0.1:{port}/")
    assert error.kind == "failed"
    assert str(error).startswith(f"could not connect to http://127.0.0.1:{port}/: ")


async def test_private_addresses_are_refused_by_default(workdir, site):
    error = await failure(tool_call(workdir), site.url("/page.html"))
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "refusing to fetch a private address (127.0.0.1); the operator can allow it",
    )
    assert site.methods == []


async def test_only_http_and_https_are_fetched(call):
    error = await failure(call, "file:///etc/passwd")
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "only http and https URLs can be fetched: 'file:///etc/passwd'",
    )


async def test_a_follow_up_cuts_the_fetch_short(call, site):
    fetching = asyncio.ensure_future(fetch(call, site.url("/stall"), timeout_s=60))
    await eventually(lambda: site.methods, what="the request reached the site")
    call.cut_short.set()
    with pytest.raises(ToolError) as caught:
        await fetching
    assert caught.value.kind == "cancelled"


def test_the_arguments_take_spec_defaults_and_limits():
    args = decode(msgspec.json.Decoder(WebFetchArgs), WebFetchArgs, b'{"url": "http://a.b/"}')
    assert (args.method, args.timeout_s, args.max_chars, args.format, args.headers) == (
        "GET",
        30.0,
        20_000,
        "auto",
        {},
    )
    assert time_limit_s(args) == 40.0
    for wrong in (b'{"url": "x", "timeout_s": 121}', b'{"url": "x", "max_chars": 100001}'):
        with pytest.raises(ToolError) as caught:
            decode(msgspec.json.Decoder(WebFetchArgs), WebFetchArgs, wrong)
        assert caught.value.kind == "invalid_arguments"
