"""The anthropic provider against the fake Messages API, over real HTTP."""

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from services.session.providers.anthropic import Anthropic
from services.session.providers.protocol import (
    AuthError,
    ModelRequest,
    ProviderError,
    RequestedCall,
    StreamEvent,
    TextDelta,
)
from shared.ids import SessionId, ToolCallId, TurnId
from shared.messages.contract import Sender
from shared.messages.history import (
    AssistantMessage,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolCall,
    ToolResult,
    ToolResults,
    TurnFinished,
    TurnStarted,
    Usage,
    UserMessage,
)
from shared.messages.tools import ToolSpec
from shared.model_config import ModelConfig
from tests.kit.anthropic_api import (
    AnthropicServer,
    HttpError,
    TokenCounts,
    anthropic_api,
    cut_stream,
    http_error,
    reply,
    stream_error,
    tool_call,
    tool_calls,
)
from tests.kit.anthropic_wire import CacheControl

KEY = "sk-ant-test"
TURN = TurnId("t1")
SCHEMA = b'{"type":"object","properties":{"command":{"type":"string"}}}'
SHELL = ToolSpec(name="shell", description="Run a shell command.", parameters=msgspec.Raw(SCHEMA))
READ = ToolSpec(
    name="read_file", description="Read a file.", parameters=msgspec.Raw(b'{"type":"object"}')
)
SENDER = Sender(user_id=1, display_name="Ada")
ASK = ModelRequest(
    system_prompt="You are Stellaclaw.",
    history=[UserMessage(turn_id=TURN, text="hi", sender=SENDER)],
    tools=[],
)


@pytest.fixture
async def fake() -> AsyncIterator[AnthropicServer]:
    async with anthropic_api(api_key=KEY) as server:
        yield server


def model_at(base_url: str, **overrides: object) -> ModelConfig:
    """An anthropic model at the fake; `cache_ttl` 0 unless overridden (None: the default)."""
    settings: dict[str, object] = {"provider": "anthropic", "model": "claude-test"}
    settings |= {"base_url": base_url, "api_key": KEY, "max_output_tokens": 1234, "cache_ttl": 0}
    return msgspec.convert(settings | overrides, ModelConfig)


async def complete(http, model: ModelConfig, request: ModelRequest = ASK, events=None):
    sink: list[StreamEvent] = [] if events is None else events
    return await Anthropic().complete(http, model, request, sink.append)


def call(ours: str, theirs: str, name: str, arguments: str) -> ToolCall:
    return ToolCall(
        call_id=ToolCallId(ours), provider_call_id=theirs, name=name, arguments=arguments
    )


def result(call_id: str, content: str, *, is_error: bool = False) -> ToolResult:
    return ToolResult(call_id=ToolCallId(call_id), tool="t", content=content, is_error=is_error)


def history() -> list[HistoryEvent]:
    turn2 = TurnId("t2")
    return [
        SessionStarted(session_id=SessionId("s1"), session_type="foreground", model="m"),
        TurnStarted(turn_id=TURN, input_seq=1),
        UserMessage(turn_id=TURN, text="what is in a.txt?", sender=SENDER),
        AssistantMessage(
            turn_id=TURN,
            text="Looking.",
            model="m",
            tool_calls=[
                call("c1_0_0", "toolu_01", "read_file", '{"path":"a.txt"}'),
                call("c1_0_1", "toolu_02", "shell", '{"command": "ls"}'),
            ],
        ),
        ToolResults(turn_id=TURN, results=[result("c1_0_0", '"hello"'), result("c1_0_1", "[]")]),
        Notice(turn_id=TURN, tag="Time", text="[Time: 2025-01-01 10:00 UTC]"),
        AssistantMessage(turn_id=TURN, text="It says hello.", model="m"),
        TurnFinished(turn_id=TURN, outcome="answered"),
        TurnStarted(turn_id=turn2, input_seq=2),
        UserMessage(turn_id=turn2, text="and b.txt?", sender=SENDER),
        AssistantMessage(  # an id from another provider, and arguments that are no object
            turn_id=turn2,
            text="",
            model="m",
            tool_calls=[call("c2_0_0", "functions.read:1", "read_file", "[1, 2]")],
        ),
        ToolResults(turn_id=turn2, results=[result("c2_0_0", '{"error":"bad"}', is_error=True)]),
        AssistantMessage(turn_id=turn2, text="  ", model="m"),  # nothing said: not sent
    ]


def text(value: str) -> dict[str, object]:
    return {"type": "text", "text": value}


def use(call_id: str, name: str, arguments: dict[str, object]) -> dict[str, object]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def answered(call_id: str, content: str, *, is_error: bool = False) -> dict[str, object]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error}


async def test_a_text_reply_is_assembled_and_streamed_as_it_arrives(fake, http):
    fake.script(reply("Hello, Ada. The answer is forty-two."))
    events: list[StreamEvent] = []

    answer = await complete(http, model_at(fake.base_url), events=events)

    assert answer.text == "Hello, Ada. The answer is forty-two."
    assert answer.tool_calls == []
    assert len(events) == 3  # the fake sends the text in three deltas
    assert all(isinstance(event, TextDelta) for event in events)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == answer.text
    assert "tools" not in fake.requests[0].body  # none offered: no `tools` key


async def test_several_tool_uses_are_assembled_with_their_json_input(fake, http):
    fake.script(
        tool_calls(
            tool_call("read_file", {"path": "notes/a.txt"}, call_id="toolu_a"),
            tool_call("shell", '{"command": "ls -la"}', call_id="toolu_b"),
            tool_call("shell", "{not json"),
            tool_call("status", ""),  # a tool without input streams only an empty piece
            text="Let me look.",
        )
    )

    answer = await complete(http, model_at(fake.base_url))

    assert answer.text == "Let me look."
    assert answer.tool_calls == [
        RequestedCall(
            provider_call_id="toolu_a", name="read_file", arguments='{"path":"notes/a.txt"}'
        ),
        RequestedCall(provider_call_id="toolu_b", name="shell", arguments='{"command": "ls -la"}'),
        RequestedCall(provider_call_id="toolu_fake_1", name="shell", arguments="{not json"),
        RequestedCall(provider_call_id="toolu_fake_2", name="status", arguments="{}"),
    ]


async def test_history_goes_as_alternating_messages_of_blocks(fake, http):
    fake.script(reply("b.txt is unreadable."))
    request = ModelRequest(
        system_prompt="sys", history=history(), tools=[], notice="[Plan Reminder] finish up"
    )

    await complete(http, model_at(fake.base_url), request)

    assert fake.requests[0].body["messages"] == [
        {"role": "user", "content": [text("what is in a.txt?")]},
        {
            "role": "assistant",
            "content": [
                text("Looking."),
                use("toolu_01", "read_file", {"path": "a.txt"}),
                use("toolu_02", "shell", {"command": "ls"}),
            ],
        },
        {
            "role": "user",
            "content": [
                answered("toolu_01", '"hello"'),
                answered("toolu_02", "[]"),
                text("[Time: 2025-01-01 10:00 UTC]"),  # a notice after results joins them
            ],
        },
        {"role": "assistant", "content": [text("It says hello.")]},
        {"role": "user", "content": [text("and b.txt?")]},
        {"role": "assistant", "content": [use("c2_0_0", "read_file", {})]},  # our id
        {
            "role": "user",
            "content": [
                answered("c2_0_0", '{"error":"bad"}', is_error=True),
                text("[Plan Reminder] finish up"),  # the request's notice, last
            ],
        },
    ]


async def test_the_request_carries_the_headers_and_the_body_the_api_wants(fake, http):
    fake.script(reply("ok"))
    extra = {"anthropic-beta": "tools-2024", "X-Title": "Stellaclaw"}

    model = model_at(fake.base_url, headers=extra)

    await complete(http, model, msgspec.structs.replace(ASK, tools=[SHELL]))

    (request,) = fake.requests
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["anthropic-beta"] == "tools-2024"
    assert request.headers["x-title"] == "Stellaclaw"
    assert "authorization" not in request.headers
    assert request.body == {
        "model": "claude-test",
        "max_tokens": 1234,
        "system": [text("You are Stellaclaw.")],
        "messages": [{"role": "user", "content": [text("hi")]}],
        "tools": [
            {
                "name": "shell",
                "description": "Run a shell command.",
                "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
            }
        ],
        "stream": True,
    }  # no `thinking`: replaying thinking blocks needs history that keeps them


@pytest.mark.parametrize(
    ("cache_ttl", "ttl"),
    [(None, None), (300, None), (3600, "1h")],  # None: Anthropic models default to 300 s
)
async def test_cache_markers_go_on_system_last_tool_and_last_block(fake, http, cache_ttl, ttl):
    fake.script(reply("ok"))
    request = ModelRequest(
        system_prompt="sys", history=history(), tools=[READ, SHELL], notice="[Plan Reminder] go"
    )

    await complete(http, model_at(fake.base_url, cache_ttl=cache_ttl), request)

    (sent,) = fake.requests
    marker = CacheControl(type="ephemeral", ttl=ttl)
    assert not isinstance(sent.typed.system, str)
    assert [block.cache_control for block in sent.typed.system] == [marker]
    assert [tool.cache_control for tool in sent.typed.tools] == [None, marker]
    blocks = [block for message in sent.typed.messages for block in message.blocks]
    assert [block.cache_control for block in blocks] == [None] * (len(blocks) - 1) + [marker]
    expected = {"type": "ephemeral", "ttl": "1h"} if ttl else {"type": "ephemeral"}
    assert sent.body["system"] == [{"type": "text", "text": "sys", "cache_control": expected}]


async def test_a_cache_ttl_of_0_sends_no_markers(fake, http):
    fake.script(reply("ok"))
    request = ModelRequest(system_prompt="sys", history=history(), tools=[READ, SHELL])

    await complete(http, model_at(fake.base_url, cache_ttl=0), request)

    assert b"cache_control" not in msgspec.json.encode(fake.requests[0].body)


async def test_usage_maps_anthropics_cache_fields(fake, http):
    counts = TokenCounts(
        input_tokens=12,
        output_tokens=34,
        cache_creation_input_tokens=56,
        cache_read_input_tokens=78,
    )
    fake.script(reply("ok", usage=counts))

    answer = await complete(http, model_at(fake.base_url))

    assert answer.usage == Usage(input=12, cache_read=78, cache_write=56, output=34)


TOO_LONG = "prompt is too long: 208310 tokens > 200000 maximum"
FAILURES = [  # the step, then the error's class, whether a retry may cure it, and its reason
    (
        http_error(529, "Overloaded", retry_after_s=7),
        "ProviderError, transient: HTTP 529 from 127.0.0.1: Overloaded",
    ),
    (
        stream_error("overloaded_error", "Overloaded"),
        "ProviderError, transient: error in the stream from 127.0.0.1: "
        "overloaded_error: Overloaded",
    ),
    (
        http_error(400, TOO_LONG),
        f"ContextLengthError, final: HTTP 400 from 127.0.0.1: {TOO_LONG}",
    ),
    (
        stream_error("invalid_request_error", TOO_LONG),
        "ContextLengthError, final: error in the stream from 127.0.0.1: invalid_request_error: "
        + TOO_LONG,
    ),
    (
        http_error(400, "max_tokens: must be at most 64000"),
        "ProviderError, final: HTTP 400 from 127.0.0.1: max_tokens: must be at most 64000",
    ),
    (
        cut_stream(),
        "ProviderError, transient: the stream from 127.0.0.1 ended before the response finished",
    ),
]


@pytest.mark.parametrize(("step", "expected"), FAILURES)
async def test_a_failure_says_what_failed_and_whether_a_retry_may_cure_it(
    fake, http, step, expected
):
    fake.script(step)

    with pytest.raises(ProviderError) as caught:
        await complete(http, model_at(fake.base_url))

    error = caught.value
    cure = "transient" if error.is_transient else "final"
    assert f"{type(error).__name__}, {cure}: {error.reason}" == expected
    assert error.retry_after == (step.retry_after_s if isinstance(step, HttpError) else None)


async def test_a_rejected_key_is_an_auth_error(fake, http):
    with pytest.raises(AuthError) as caught:
        await complete(http, model_at(fake.base_url, api_key="sk-ant-wrong"))

    assert caught.value.reason == "HTTP 401 from 127.0.0.1: invalid x-api-key"
    assert not caught.value.is_transient
    assert fake.requests[0].headers["x-api-key"] == "sk-ant-wrong"


async def test_a_provider_that_stays_silent_fails_the_call(fake, http):
    fake.script(reply("too late", delay_s=30))

    with pytest.raises(ProviderError, match=r"timed out after 0\.3 s|silent for 0\.3 s"):
        await complete(http, model_at(fake.base_url, timeout_s=0.3))


def sse_transport(*lines: str) -> httpx.AsyncClient:
    """A client whose every response is this SSE body: for streams the fake never sends."""
    body = "".join(line + "\n" for line in lines).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_a_malformed_data_line_is_a_provider_error():
    async with sse_transport("event: message_start", "data: {not json", "") as client:
        with pytest.raises(ProviderError, match=r"malformed stream event from provider\.test") as e:
            await complete(client, model_at("http://provider.test/v1"))

    assert e.value.is_transient


async def test_the_event_line_names_data_without_a_type_and_unknown_events_are_skipped():
    events = [
        ("message_start", '{"message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}'),
        ("content_block_start", '{"index": 0, "content_block": {"type": "text", "text": ""}}'),
        (
            "something_new",
            '{"type": "something_new", "delta": {"type": "text_delta", "text": "x"}}',
        ),
        ("content_block_delta", '{"index": 0, "delta": {"type": "text_delta", "text": "hi"}}'),
        ("message_delta", '{"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}'),
        ("message_stop", "{}"),
    ]
    lines = [f"event: {name}\ndata: {data}\n" for name, data in events]
    async with sse_transport(*lines) as client:
        answer = await complete(client, model_at("http://provider.test/v1"))

    assert (answer.text, answer.usage) == ("hi", Usage(input=5, output=2))
