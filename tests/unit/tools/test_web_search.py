"""web_search per SPEC §5.3 against a fake Brave Search API over real HTTP: the request Brave
gets, the four result shapes, and the error kinds (rate limit, refused key, time limit)."""

import socket
from pathlib import Path

import msgspec
import pytest

from services.tools.builtin.web_search import WebSearchArgs, WebSearchResult, web_search
from services.tools.catalog import decode
from services.tools.context import RunnerContext, Settings
from services.tools.results import ToolError, encode
from services.tools.workspace import ToolCall
from shared.tools_config import SearchConfig
from tests.kit.brave_api import (
    Fault,
    brave_api,
    page_url,
    rate_limited,
    result_url,
    thumbnail_url,
)
from tests.unit.tools.samples import tool_call

KEY = "BSA-unit-test-key-0123456789"
DECODER = msgspec.json.Decoder(WebSearchArgs)


@pytest.fixture
async def brave():
    async with brave_api(token=KEY) as fake:
        yield fake


def call_with(workdir: Path, base_url: str, *, key: str = KEY, timeout_s: float = 5.0) -> ToolCall:
    config = SearchConfig(api_key=key, base_url=base_url, timeout_s=timeout_s)
    runner = RunnerContext(settings=Settings(search=config))
    return msgspec.structs.replace(tool_call(workdir), runner=runner)


async def search(call: ToolCall, **arguments: object) -> WebSearchResult:
    args = decode(DECODER, WebSearchArgs, msgspec.json.encode(arguments))
    return await web_search(args, call)


async def failure(call: ToolCall, **arguments: object) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await search(call, **arguments)
    return caught.value


async def test_a_web_search_asks_brave_with_the_key_and_maps_its_results(workdir, brave):
    result = await search(call_with(workdir, brave.base_url), query="rust async")
    [received] = brave.requests
    assert (received.kind, received.params) == ("web", {"q": "rust async", "count": "8"})
    assert received.headers["x-subscription-token"] == KEY
    assert (result.query, result.kind, len(result.results)) == ("rust async", "web", 8)
    first, second = result.results[:2]
    assert (first.title, first.url) == ("rust async guide 1", result_url("web", 1))
    assert first.description == "All about rust async & more, part 1."  # markup dropped
    assert (first.age, first.thumbnail) == (None, None)
    assert (second.age, second.thumbnail) == ("January 2, 2025", thumbnail_url("web", 2))
    assert bytes(encode(result)).startswith(
        b'{"query":"rust async","kind":"web","results":[{"title":"rust async guide 1",'
        b'"url":"https://example.com/web/1","description":"All about rust async & more, part 1."},'
    )


@pytest.mark.parametrize(
    ("kind", "freshness", "expected"),
    [
        ("news", "day", ("pd", "ai in the news 2", "2 hours ago")),
        ("videos", "week", ("pw", "ai explained 2", "March 3, 2024")),
        ("web", "month", ("pm", "ai guide 2", "January 2, 2025")),
        ("news", "year", ("py", "ai in the news 2", "2 hours ago")),
    ],
)
async def test_news_and_videos_map_and_freshness_becomes_brave_s_code(
    workdir, brave, kind, freshness, expected
):
    brave_freshness, title, age = expected
    call = call_with(workdir, brave.base_url)
    result = await search(call, query="ai", kind=kind, max_results=3, freshness=freshness)
    assert brave.requests[0].kind == kind
    assert brave.requests[0].params == {"q": "ai", "count": "3", "freshness": brave_freshness}
    assert [hit.url for hit in result.results] == [result_url(kind, n) for n in (1, 2, 3)]
    assert (result.results[1].title, result.results[1].age) == (title, age)
    assert result.results[1].thumbnail == thumbnail_url(kind, 2)


async def test_an_image_result_points_at_the_image_and_names_its_page(workdir, brave):
    result = await search(call_with(workdir, brave.base_url), query="fox", kind="images")
    assert brave.requests[0].params == {"q": "fox", "count": "8"}
    first = result.results[0]
    assert (first.title, first.url) == ("fox picture 1", result_url("images", 1))
    assert first.description == f"on {page_url('images', 1)}"
    assert (first.thumbnail, first.age) == (thumbnail_url("images", 1), None)


async def test_freshness_does_not_apply_to_images(workdir, brave):
    error = await failure(
        call_with(workdir, brave.base_url), query="fox", kind="images", freshness="day"
    )
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "freshness does not apply to images; leave it out",
    )
    assert brave.requests == []


async def test_fewer_results_than_asked_and_none_at_all(workdir):
    async with brave_api(token=KEY, available=3) as fake:
        result = await search(call_with(workdir, fake.base_url), query="rare", max_results=20)
        assert fake.requests[0].params["count"] == "20"
        assert len(result.results) == 3
    async with brave_api(token=KEY, available=0) as fake:  # Brave leaves `web` out
        result = await search(call_with(workdir, fake.base_url), query="nothing at all")
        assert result.results == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"query": "x" * 401}, "Expected `str` of length <= 400 - at `$.query`"),
        ({"query": ""}, "Expected `str` of length >= 1 - at `$.query`"),
        ({"query": "a", "max_results": 21}, "Expected `int` <= 20 - at `$.max_results`"),
        ({"query": "a", "kind": "maps"}, "Invalid enum value 'maps' - at `$.kind`"),
        ({"query": "a", "freshness": "hour"}, "Invalid enum value 'hour' - at `$.freshness`"),
        (
            {"query": "a", "count": 3},
            'unknown argument "count"; accepted: query, kind, max_results, freshness',
        ),
    ],
)
async def test_bad_arguments_are_refused_before_any_request(workdir, brave, arguments, message):
    error = await failure(call_with(workdir, brave.base_url), **arguments)
    assert (error.kind, str(error)) == ("invalid_arguments", message)
    assert brave.requests == []


@pytest.mark.parametrize(
    ("fault", "when"),
    [
        (rate_limited(reset="1, 1419704", remaining="0, 999"), "try again in 1 s"),
        (rate_limited(reset="1, 1419704", remaining="1, 0"), "try again in 17 days"),
        (rate_limited(retry_after="90", reset="1, 5"), "try again in 90 s"),
        (rate_limited(reset="", remaining=""), "try again later"),
    ],
)
async def test_a_429_is_unavailable_with_the_retry_time(workdir, brave, fault, when):
    brave.fail_next(fault)
    error = await failure(call_with(workdir, brave.base_url), query="busy")
    assert (error.kind, str(error)) == (
        "unavailable",
        f"Brave Search is rate-limited (HTTP 429): Request rate limit exceeded for plan.; {when}",
    )


async def test_a_refused_key_is_unavailable_and_never_shown(workdir, brave):
    wrong = "BSA-wrong-key-9876543210"
    error = await failure(call_with(workdir, brave.base_url, key=wrong), query="x")
    assert (error.kind, str(error)) == (
        "unavailable",
        "Brave Search refused the API key (HTTP 422); the operator checks search.api_key",
    )
    assert brave.requests[0].headers["x-subscription-token"] == wrong


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_say_the_key_was_refused(workdir, brave, status):
    brave.fail_next(Fault(status=status, code="UNAUTHORIZED", detail=f"bad token {KEY}"))
    error = await failure(call_with(workdir, brave.base_url), query="x")
    assert error.kind == "unavailable"
    assert str(error).startswith(f"Brave Search refused the API key (HTTP {status})")
    assert KEY not in str(error)


async def test_other_errors_fail_with_brave_s_detail(workdir, brave):
    brave.fail_next(Fault(status=500, code="INTERNAL", detail=f"backend down for {KEY}"))
    error = await failure(call_with(workdir, brave.base_url), query="x")
    assert (error.kind, str(error)) == (
        "failed",
        "Brave Search failed (HTTP 500): backend down for ***",
    )


async def test_no_answer_within_the_time_limit_is_timed_out(workdir, brave):
    brave.hold()
    error = await failure(call_with(workdir, brave.base_url, timeout_s=0.2), query="slow")
    assert (error.kind, str(error)) == ("timed_out", "Brave Search did not answer within 0.2 s")


async def test_an_unreachable_api_fails(workdir):
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/res/v1"
    error = await failure(call_with(workdir, base_url), query="x")
    assert error.kind == "failed"
    assert str(error).startswith(f"cannot reach Brave Search at {base_url}: ")


async def test_without_a_search_section_the_tool_is_unavailable(workdir):
    error = await failure(tool_call(workdir), query="x")
    assert (error.kind, str(error)) == (
        "unavailable",
        "web_search is not configured; the operator adds a [search] section",
    )
