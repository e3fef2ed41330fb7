"""The openai_responses provider against the fake Responses API, over real HTTP."""

import asyncio
from collections.abc import Mapping

import httpx
import msgspec
import pytest

from services.session.providers.openai_responses import OpenAIResponses, request_body, to_input
from services.session.providers.protocol import (
    AuthError,
    ContextLengthError,
    ModelReply,
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
from tests.kit.openai_responses_api import (
    Broken,
    TokenCounts,
    http_error,
    reply,
    responses_api,
    tool_call,
    tool_calls,
)

TURN = TurnId("t1")
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}}}
RAW_SCHEMA = msgspec.Raw(msgspec.json.encode(SCHEMA))
SHELL = ToolSpec(name="shell", description="Run a shell command.", parameters=RAW_SCHEMA)
ASK = ModelRequest(system_prompt="You are a test.", history=[], tools=[])
PROVIDER = OpenAIResponses()


def model_at(base_url: str, **extra: object) -> ModelConfig:
    table: dict[str, object] = {"provider": "openai_responses", "base_url": base_url}
    table |= {"model": "gpt-fake", "max_output_tokens": 1234, "timeout_s": 30.0} | extra
    return msgspec.convert(table, ModelConfig)


async def complete(
    http: httpx.AsyncClient, model: ModelConfig, request: ModelRequest = ASK
) -> tuple[ModelReply, list[StreamEvent]]:
    events: list[StreamEvent] = []
    answer = await PROVIDER.complete(http, model, request, events.append)
    return answer, events


@pytest.fixture
async def api():
    async with responses_api() as fake:
        yield fake


def call(ours: str, theirs: str, name: str, args: str) -> ToolCall:
    return ToolCall(call_id=ToolCallId(ours), provider_call_id=theirs, name=name, arguments=args)


def history() -> list[HistoryEvent]:
    calls = [
        call("c1_0_0", "call_read", "read_file", '{"path":"a.txt"}'),
        call("c1_0_1", "", "shell", '{"command":"ls"}'),  # no provider id: ours goes instead
    ]
    results = [
        ToolResult(call_id=ToolCallId("c1_0_0"), tool="read_file", content='"hello"'),
        ToolResult(call_id=ToolCallId("c1_0_1"), tool="shell", content='"a.txt"'),
    ]
    return [
        SessionStarted(session_id=SessionId("s1"), session_type="foreground", model="m"),
        TurnStarted(turn_id=TURN, input_seq=1),
        UserMessage(turn_id=TURN, text="what is in a.txt?", sender=Sender(display_name="Ada")),
        AssistantMessage(turn_id=TURN, text="Looking.", tool_calls=calls, model="m"),
        ToolResults(turn_id=TURN, results=results),
        Notice(turn_id=TURN, tag="Cancelled", text="[Cancelled]"),
        AssistantMessage(turn_id=TURN, text="It says hello.", model="m"),
        TurnFinished(turn_id=TURN, outcome="answered"),
    ]


def user(text: str) -> dict[str, object]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def said(text: str) -> dict[str, object]:
    content = [{"type": "output_text", "text": text}]
    return {"type": "message", "role": "assistant", "content": content}


def function_call(call_id: str, name: str, arguments: str) -> dict[str, object]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def output(call_id: str, content: str) -> dict[str, object]:
    return {"type": "function_call_output", "call_id": call_id, "output": content}


async def test_a_text_reply_is_streamed_as_deltas_and_assembled(api, http):
    api.script(reply("Hello, Ada. The answer is forty-two."))

    answer, events = await complete(http, model_at(api.base_url))

    assert answer.text == "Hello, Ada. The answer is forty-two."
    assert answer.tool_calls == []
    assert len(events) == 3  # the fake streams the text in three pieces
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == answer.text


async def test_several_function_calls_are_assembled_in_output_order(api, http):
    api.script(
        tool_calls(
            tool_call("read_file", {"path": "notes/a.txt"}, call_id="call_a"),
            tool_call("shell", '{"command": "ls -la"}', call_id="call_b"),
            tool_call("shell", "{not json"),
            text="Let me look.",
        )
    )

    answer, _ = await complete(http, model_at(api.base_url))

    assert answer.text == "Let me look."
    first, second, third = answer.tool_calls
    assert (first.provider_call_id, first.name) == ("call_a", "read_file")
    assert first.arguments == '{"path":"notes/a.txt"}'
    assert second == RequestedCall(
        provider_call_id="call_b", name="shell", arguments='{"command": "ls -la"}'
    )
    assert (third.name, third.arguments) == ("shell", "{not json")
    assert third.provider_call_id.startswith("call_")
    assert third.provider_call_id not in ("call_a", "call_b")


async def test_history_goes_as_input_items_with_calls_outputs_and_notices(api, http):
    api.script(reply("Anything else?"))
    request = ModelRequest(
        system_prompt="sys", history=history(), tools=[SHELL], notice="[Plan Reminder] go on"
    )

    await complete(http, model_at(api.base_url), request)

    assert api.requests[0].body["input"] == [
        user("what is in a.txt?"),
        said("Looking."),
        function_call("call_read", "read_file", '{"path":"a.txt"}'),
        function_call("c1_0_1", "shell", '{"command":"ls"}'),
        output("call_read", '"hello"'),
        output("c1_0_1", '"a.txt"'),
        user("[Cancelled]"),
        said("It says hello."),
        user("[Plan Reminder] go on"),
    ]


def test_a_provider_id_repeated_within_a_message_gives_way_to_ours_and_blank_text_goes():
    calls = [call("c1", "dup", "shell", "{}"), call("c2", "dup", "shell", "{}")]
    results = [ToolResult(call_id=ToolCallId(f"c{n}"), tool="shell", content="1") for n in (1, 2)]
    asked = AssistantMessage(turn_id=TURN, text="  ", tool_calls=calls, model="m")

    items = to_input([asked, ToolResults(turn_id=TURN, results=results)])

    calls_sent = [function_call(f"c{n}", "shell", "{}") for n in (1, 2)]
    assert items == [*calls_sent, output("c1", "1"), output("c2", "1")]


async def test_the_body_has_instructions_no_storage_a_cache_key_and_the_reasoning(api, http):
    api.script(reply("ok"))
    request = ModelRequest(system_prompt="You are Stellaclaw.", history=history(), tools=[SHELL])

    await complete(http, model_at(api.base_url, reasoning={"effort": "high"}), request)

    body = {key: value for key, value in api.requests[0].body.items() if key != "input"}
    tool = {"type": "function", "name": "shell", "description": "Run a shell command."}
    assert body == {
        "model": "gpt-fake",
        "instructions": "You are Stellaclaw.",
        "tools": [tool | {"parameters": SCHEMA}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "stream": True,
        "store": False,
        "max_output_tokens": 1234,
        "prompt_cache_key": "s1:0",  # SPEC §7.4: <session>:<compaction count>
        "reasoning": {"effort": "high"},
        "include": ["reasoning.encrypted_content"],
    }


async def test_without_tools_session_or_key_those_keys_and_headers_are_absent(api, http):
    api.script(reply("ok"))

    await complete(http, model_at(api.base_url))

    body = api.requests[0].body
    assert not {"tools", "tool_choice", "parallel_tool_calls", "prompt_cache_key"} & set(body)
    assert body["input"] == []
    assert "authorization" not in api.requests[0].headers


async def test_a_service_tier_is_sent_only_when_it_is_not_the_default(api, http):
    api.script(reply("fast"), reply("usual"))

    await complete(http, model_at(api.base_url, service_tier="fast"))
    await complete(http, model_at(api.base_url, service_tier="default"))

    assert api.requests[0].body["service_tier"] == "priority"  # "fast" is another name for it
    assert "service_tier" not in api.requests[1].body


async def test_the_api_key_and_configured_headers_are_sent(http):
    async with responses_api(api_key="sk-test") as fake:
        fake.script(reply("welcome"))
        model = model_at(fake.base_url, api_key="sk-test", headers={"X-Title": "Stellaclaw"})
        answer, _ = await complete(http, model)

    assert answer.text == "welcome"
    headers = fake.requests[0].headers
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["x-title"] == "Stellaclaw"
    assert headers["accept"] == "text/event-stream"


async def test_usage_separates_cached_input_and_counts_reasoning(api, http):
    used = TokenCounts(input_tokens=900, output_tokens=200, cached_tokens=600, reasoning_tokens=50)
    api.script(reply("ok", usage=used))

    answer, _ = await complete(http, model_at(api.base_url))

    assert answer.usage == Usage(input=300, cache_read=600, output=200, reasoning=50)


TOO_LONG = "Your input exceeds the context window of this model."
CONTEXT = "context_length_exceeded"
FAILURES = [  # what the fake does; the error's class and whether a retry may cure it
    (http_error(400, TOO_LONG, code=CONTEXT), ContextLengthError, False),
    (http_error(400, "Invalid type for 'input[0]'."), ProviderError, False),
    (http_error(404, "The model 'gpt-fake' does not exist."), ProviderError, False),
    (http_error(500, "The server had an error."), ProviderError, True),
    (Broken(kind="failed", message="The server had an error.", text="Half"), ProviderError, True),
    (Broken(kind="failed", message=TOO_LONG, code=CONTEXT), ContextLengthError, False),
    (Broken(kind="error", message="Slow down.", code="rate_limit_exceeded"), ProviderError, True),
    (Broken(kind="error", message="Key revoked.", code=401), AuthError, False),
    (Broken(kind="cut", text="half an answ"), ProviderError, True),
]
REASONS = [  # the one line the user reads, in the same order
    f"HTTP 400 from 127.0.0.1: {TOO_LONG}",
    "HTTP 400 from 127.0.0.1: Invalid type for 'input[0]'.",
    "HTTP 404 from 127.0.0.1: The model 'gpt-fake' does not exist.",
    "HTTP 500 from 127.0.0.1: The server had an error.",
    "the response from 127.0.0.1 failed: The server had an error.",
    f"the response from 127.0.0.1 failed: {TOO_LONG}",
    "error in the stream from 127.0.0.1: Slow down.",
    "error in the stream from 127.0.0.1: Key revoked.",
    "the stream from 127.0.0.1 ended before the response finished",
]


@pytest.mark.parametrize("case", [(*f, r) for f, r in zip(FAILURES, REASONS, strict=True)])
async def test_each_failure_is_a_provider_error_of_its_kind(api, http, case):
    step, kind, is_transient, reason = case
    api.script(step)

    with pytest.raises(ProviderError) as caught:
        await complete(http, model_at(api.base_url))

    assert type(caught.value) is kind
    assert (caught.value.reason, caught.value.is_transient) == (reason, is_transient)


async def test_a_rejected_key_is_an_auth_error(http):
    async with responses_api(api_key="sk-right") as fake:
        with pytest.raises(AuthError) as caught:
            await complete(http, model_at(fake.base_url, api_key="sk-wrong"))

    assert caught.value.reason == "HTTP 401 from 127.0.0.1: Incorrect API key provided."
    assert caught.value.status == 401
    assert not caught.value.is_transient


async def test_a_503_with_retry_after_is_transient_and_says_when_to_retry(api, http):
    api.script(http_error(503, "upstream overloaded", retry_after_s=7))

    with pytest.raises(ProviderError) as caught:
        await complete(http, model_at(api.base_url))

    assert (caught.value.status, caught.value.retry_after) == (503, 7)
    assert caught.value.is_transient


# --- streams the fake never sends ---------------------------------------------------------------


def streaming(body: bytes) -> httpx.AsyncClient:
    """A client whose every response is this SSE body."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def sse(*events: Mapping[str, object]) -> httpx.AsyncClient:
    """Each event as the API frames it: an `event:` and a `data:` line."""
    frames = [f"event: {e['type']}\ndata: ".encode() + msgspec.json.encode(e) for e in events]
    return streaming(b"\n\n".join(frames) + b"\n\n")


PROVIDER_TEST = "http://provider.test/v1"
COMPLETED = {"type": "response.completed", "response": {"status": "completed", "usage": None}}


def call_added(index: int, item_id: str, call_id: str, name: str) -> dict[str, object]:
    item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name}
    return {"type": "response.output_item.added", "output_index": index, "item": item}


def arguments(item_id: str, index: int | None, delta: str) -> dict[str, object]:
    event: dict[str, object] = {"type": "response.function_call_arguments.delta", "delta": delta}
    return event | {"item_id": item_id} | ({} if index is None else {"output_index": index})


async def test_arguments_come_from_deltas_by_item_and_the_finished_item_wins():
    item = {"type": "function_call", "id": "fc_3", "call_id": "call_3", "name": "shell"}
    done = {"type": "response.output_item.done", "output_index": 2, "item": item}
    async with sse(
        call_added(0, "fc_1", "call_1", "shell"),
        call_added(1, "fc_2", "call_2", "read_file"),
        call_added(2, "fc_3", "call_3", "shell"),
        arguments("fc_2", 1, '{"path":'),
        arguments("fc_1", 0, '{"command":'),
        arguments("fc_2", None, ' "a"}'),  # a server that names the item only
        arguments("fc_1", 0, ' "ls"}'),
        arguments("fc_3", 2, '{"comm'),  # a delta lost on the way: the finished item has it all
        done | {"item": item | {"arguments": '{"command": "pwd"}'}},
        COMPLETED,
    ) as client:
        answer, _ = await complete(client, model_at(PROVIDER_TEST))

    assert answer.tool_calls == [
        RequestedCall(provider_call_id="call_1", name="shell", arguments='{"command": "ls"}'),
        RequestedCall(provider_call_id="call_2", name="read_file", arguments='{"path": "a"}'),
        RequestedCall(provider_call_id="call_3", name="shell", arguments='{"command": "pwd"}'),
    ]


async def test_an_incomplete_response_ends_the_stream_with_what_came():
    delta = {"type": "response.output_text.delta", "output_index": 0, "delta": "Cut sh"}
    usage = {"input_tokens": 10, "output_tokens": 5}
    incomplete = {"type": "response.incomplete", "response": {"usage": usage}}
    async with sse(delta, incomplete) as client:
        answer, _ = await complete(client, model_at(PROVIDER_TEST))

    assert answer == ModelReply(text="Cut sh", tool_calls=[], usage=Usage(input=10, output=5))


async def test_a_malformed_event_is_a_provider_error():
    async with streaming(b"event: response.created\ndata: {not json\n\n") as client:
        with pytest.raises(ProviderError, match=r"malformed stream event from provider\.test"):
            await complete(client, model_at(PROVIDER_TEST))


async def test_a_provider_that_never_answers_times_out():
    never = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("unreachable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ProviderError, match=r"timed out after 0\.3 s"):
            await complete(client, model_at(PROVIDER_TEST, timeout_s=0.3))


def test_openrouter_anthropic_models_get_a_cache_marker():
    openrouter = "https://openrouter.ai/api/v1"

    claude = request_body(model_at(openrouter, model="anthropic/claude-sonnet-4"), ASK)
    gpt = request_body(model_at(openrouter, model="openai/gpt-5"), ASK)

    assert claude["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in gpt
