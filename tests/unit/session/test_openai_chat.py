"""The openai_chat client against the fake OpenAI server, over real HTTP."""

import httpx
import msgspec
import pytest

from services.session.providers.openai_chat import complete, to_messages
from services.session.providers.protocol import (
    AuthError,
    ModelReply,
    ProviderError,
    RequestedCall,
)
from shared.ids import SessionId, ToolCallId, TurnId
from shared.messages.contract import Sender
from shared.messages.history import (
    AssistantMessage,
    HistoryEvent,
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
from tests.kit.llm_api import (
    TokenCounts,
    http_error,
    llm_api,
    reply,
    stream_error,
    tool_call,
    tool_calls,
)

TURN = TurnId("t1")
SHELL = ToolSpec(
    name="shell",
    description="Run a shell command.",
    parameters=msgspec.Raw(b'{"type":"object","properties":{"command":{"type":"string"}}}'),
)
ASK: list[dict[str, object]] = [{"role": "user", "content": "hi"}]


def model_at(base_url: str, *, api_key: str | None = None, timeout_s: float = 30.0) -> ModelConfig:
    return ModelConfig(
        provider="openai_chat",
        model="fake-model",
        base_url=base_url,
        api_key=api_key,
        max_output_tokens=1234,
        timeout_s=timeout_s,
    )


def history() -> list[HistoryEvent]:
    sender = Sender(user_id=1, display_name="Ada")
    calls = [
        ToolCall(
            call_id=ToolCallId("c1_0_0"),
            provider_call_id="functions.read:0",  # not subject-safe: ours differs
            name="read_file",
            arguments='{"path":"a.txt"}',
        ),
        ToolCall(
            call_id=ToolCallId("call_b"),
            provider_call_id="call_b",
            name="shell",
            arguments='{"command":"ls"}',
        ),
    ]
    return [
        SessionStarted(session_id=SessionId("s1"), session_type="foreground", model="m"),
        TurnStarted(turn_id=TURN, input_seq=1),
        UserMessage(turn_id=TURN, text="what is in a.txt?", sender=sender),
        AssistantMessage(turn_id=TURN, text="Looking.", tool_calls=calls, model="m"),
        ToolResults(
            turn_id=TURN,
            results=[
                ToolResult(call_id=ToolCallId("c1_0_0"), tool="read_file", content='"hello"'),
                ToolResult(call_id=ToolCallId("call_b"), tool="shell", content='"a.txt"'),
            ],
        ),
        AssistantMessage(turn_id=TURN, text="It says hello.", model="m"),
        TurnFinished(turn_id=TURN, outcome="answered"),
    ]


async def test_a_text_reply_is_assembled_from_the_stream(server, http):
    server.script(reply("Hello, Ada. The answer is forty-two."))

    answer = await complete(http, model_at(server.base_url), ASK, [])

    assert answer.text == "Hello, Ada. The answer is forty-two."
    assert answer.tool_calls == []


async def test_several_streamed_tool_calls_are_assembled_per_index(server, http):
    server.script(
        tool_calls(
            tool_call("read_file", {"path": "notes/a.txt"}, call_id="call_a"),
            tool_call("shell", '{"command": "ls -la"}', call_id="call_b"),
            tool_call("shell", "{not json", call_id="call_c"),
            text="Let me look.",
        )
    )

    answer = await complete(http, model_at(server.base_url), ASK, [SHELL])

    assert answer.text == "Let me look."
    assert answer.tool_calls == [
        RequestedCall(
            provider_call_id="call_a", name="read_file", arguments='{"path":"notes/a.txt"}'
        ),
        RequestedCall(provider_call_id="call_b", name="shell", arguments='{"command": "ls -la"}'),
        RequestedCall(provider_call_id="call_c", name="shell", arguments="{not json"),
    ]


async def test_usage_separates_cached_input_and_counts_reasoning(server, http):
    counts = TokenCounts(
        prompt_tokens=1000, completion_tokens=200, cached_tokens=600, reasoning_tokens=50
    )
    server.script(reply("ok", usage=counts))

    answer = await complete(http, model_at(server.base_url), ASK, [])

    assert answer.usage == Usage(input=400, cache_read=600, output=200, reasoning=50)


async def test_an_http_error_is_a_provider_error_with_the_status(server, http):
    server.script(http_error(503, "upstream overloaded", retry_after_s=7))

    with pytest.raises(ProviderError) as caught:
        await complete(http, model_at(server.base_url), ASK, [])

    assert caught.value.status == 503
    assert caught.value.reason == "HTTP 503 from 127.0.0.1: upstream overloaded"
    assert caught.value.retry_after == 7
    assert caught.value.is_transient
    assert (
        caught.value.after(4).reason == "HTTP 503 from 127.0.0.1 after 4 tries: upstream overloaded"
    )


async def test_an_error_inside_a_200_stream_is_a_provider_error(server, http):
    server.script(stream_error("Provider disconnected unexpectedly", text="Partial ans"))

    with pytest.raises(ProviderError, match="Provider disconnected unexpectedly") as caught:
        await complete(http, model_at(server.base_url), ASK, [])

    assert caught.value.status is None


async def test_the_api_key_is_sent_as_a_bearer_token(http):
    async with llm_api(api_key="sk-test") as fake:
        fake.script(reply("welcome"))
        answer = await complete(http, model_at(fake.base_url, api_key="sk-test"), ASK, [])

    assert answer.text == "welcome"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-test"


async def test_a_rejected_key_is_a_401_provider_error(http):
    async with llm_api(api_key="sk-right") as fake:
        with pytest.raises(AuthError, match="HTTP 401") as caught:
            await complete(http, model_at(fake.base_url, api_key="sk-wrong"), ASK, [])

    assert caught.value.status == 401
    assert not caught.value.is_transient


async def test_without_an_api_key_no_authorization_header_is_sent(server, http):
    server.script(reply("ok"))

    await complete(http, model_at(server.base_url), ASK, [])

    assert "authorization" not in server.requests[0].headers


async def test_the_request_body_as_the_provider_sees_it(server, http):
    server.script(reply("ok"))

    await complete(http, model_at(server.base_url), ASK, [SHELL])

    body = server.requests[0].body
    assert body["model"] == "fake-model"
    assert body["messages"] == ASK
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "shell",
                "description": "Run a shell command.",
                "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
            },
        }
    ]
    assert body["tool_choice"] == "auto"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 1234


async def test_without_tools_the_body_has_no_tools_and_no_tool_choice(server, http):
    server.script(reply("ok"))

    await complete(http, model_at(server.base_url), ASK, [])

    assert "tools" not in server.requests[0].body
    assert "tool_choice" not in server.requests[0].body


def test_to_messages_maps_history_to_chat_messages():
    messages = to_messages("You are Stellaclaw.", history())

    assert messages == [
        {"role": "system", "content": "You are Stellaclaw."},
        {"role": "user", "content": "what is in a.txt?"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "functions.read:0",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path":"a.txt"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "shell", "arguments": '{"command":"ls"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "functions.read:0", "content": '"hello"'},
        {"role": "tool", "tool_call_id": "call_b", "content": '"a.txt"'},
        {"role": "assistant", "content": "It says hello."},
    ]


async def test_history_round_trips_with_tool_results_under_provider_ids(server, http):
    server.script(reply("Anything else?"))

    await complete(http, model_at(server.base_url), to_messages("sys", history()), [SHELL])

    (request,) = server.requests
    assert [message.role for message in request.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    sent_calls = request.messages[2].tool_calls or []
    assert [call.call_id for call in sent_calls] == ["functions.read:0", "call_b"]
    assert [(m.tool_call_id, m.content) for m in request.tool_messages] == [
        ("functions.read:0", '"hello"'),
        ("call_b", '"a.txt"'),
    ]
    assert request.last_user_text == "what is in a.txt?"


async def test_a_provider_that_stays_silent_fails_the_call(server, http):
    server.script(reply("too late", delay_s=30))

    with pytest.raises(ProviderError, match=r"timed out after 0\.3 s|silent for 0\.3 s"):
        await complete(http, model_at(server.base_url, timeout_s=0.3), ASK, [])


async def test_an_unreachable_provider_is_a_provider_error(http):
    async with llm_api() as fake:
        closed_url = fake.base_url  # nothing listens here once the block is left

    with pytest.raises(ProviderError, match=r"connection to 127\.0\.0\.1 failed: ConnectError"):
        await complete(http, model_at(closed_url), ASK, [])


def sse_transport(*lines: str) -> httpx.AsyncClient:
    """A client whose every response is this SSE body: for streams the fake never sends."""
    body = "".join(line + "\n" for line in lines).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_comments_and_a_null_error_are_ignored():
    chunk = '{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}],"error":null}'
    async with sse_transport(
        ": OPENROUTER PROCESSING", "", f"data: {chunk}", "", "data: [DONE]"
    ) as client:
        answer = await complete(client, model_at("http://provider.test/v1"), ASK, [])

    assert answer == ModelReply(text="hi", tool_calls=[], usage=Usage())


async def test_a_malformed_chunk_is_a_provider_error():
    async with sse_transport("data: {not json", "") as client:
        with pytest.raises(ProviderError, match=r"malformed stream chunk from provider\.test"):
            await complete(client, model_at("http://provider.test/v1"), ASK, [])


async def test_a_stream_cut_before_the_finish_is_a_provider_error():
    chunk = '{"choices":[{"index":0,"delta":{"content":"half an ans"},"finish_reason":null}]}'
    async with sse_transport(f"data: {chunk}", "") as client:
        with pytest.raises(ProviderError, match="ended before the response finished"):
            await complete(client, model_at("http://provider.test/v1"), ASK, [])


def test_a_reason_is_one_line_of_at_most_160_characters():
    error = ProviderError("HTTP 500 from x after 1 try:\n" + "boom " * 100)

    assert "\n" not in error.reason
    assert len(error.reason) == 160
    assert str(error) == error.reason


async def test_a_bare_error_message_in_a_chunk_is_a_provider_error():
    async with sse_transport('data: {"error": "model overloaded"}', "") as client:
        with pytest.raises(
            ProviderError, match=r"error in the stream from provider\.test: model overloaded"
        ):
            await complete(client, model_at("http://provider.test/v1"), ASK, [])


async def test_extra_headers_are_sent(server, http):
    server.script(reply("ok"))
    model = msgspec.structs.replace(model_at(server.base_url), headers={"X-Title": "Stellaclaw"})
    await complete(http, model, ASK, [])
    assert server.requests[0].headers["x-title"] == "Stellaclaw"
