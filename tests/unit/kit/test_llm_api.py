"""The fake OpenAI chat completions server speaks the wire format, follows its script strictly
and taps every request: checked with plain httpx."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from tests.kit.llm_api import (
    OpenAIChatServer,
    TokenCounts,
    http_error,
    llm_api,
    reply,
    stream_error,
    tool_call,
    tool_calls,
)

TIMEOUT = httpx.Timeout(5.0)


@pytest.fixture
async def server() -> AsyncIterator[OpenAIChatServer]:
    async with llm_api() as fake:
        yield fake


@pytest.fixture
async def unchecked() -> AsyncIterator[OpenAIChatServer]:
    """A running fake whose failures the test inspects itself."""
    fake = OpenAIChatServer()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        yield client


def body(*, stream: bool = False, include_usage: bool = False, **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    return request | extra


async def post(http: httpx.AsyncClient, server: OpenAIChatServer, request: dict[str, Any], **kw):
    return await http.post(f"{server.base_url}/chat/completions", json=request, **kw)


def sse(response: httpx.Response) -> tuple[list[dict[str, Any]], bool]:
    """The decoded `data:` chunks, and whether the stream ended with `[DONE]`."""
    datas = [line[len("data: ") :] for line in response.text.split("\n\n") if line]
    is_done = datas[-1] == "[DONE]"
    chunks = [msgspec.json.decode(data) for data in (datas[:-1] if is_done else datas)]
    return chunks, is_done


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]


async def test_a_plain_request_gets_a_json_completion(server, http):
    usage = TokenCounts(prompt_tokens=11, completion_tokens=3, cached_tokens=4)
    server.script(reply("Hello there", usage=usage))

    response = await post(http, server, body())

    assert response.status_code == 200
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Hello there"}
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["prompt_tokens"] == 11
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}


async def test_a_streamed_reply_comes_in_pieces_then_finish_usage_and_done(server, http):
    usage = TokenCounts(prompt_tokens=20, completion_tokens=7, reasoning_tokens=2)
    server.script(reply("The answer is forty-two.", usage=usage))

    response = await post(http, server, body(stream=True, include_usage=True))

    assert response.headers["content-type"].startswith("text/event-stream")
    chunks, is_done = sse(response)
    assert is_done
    assert deltas(chunks)[0]["role"] == "assistant"
    pieces = [delta["content"] for delta in deltas(chunks)[1:] if delta.get("content")]
    assert len(pieces) > 1
    assert "".join(pieces) == "The answer is forty-two."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["usage"] is None
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}


async def test_a_stream_without_include_usage_has_no_usage_chunk(server, http):
    server.script(reply("ok"))

    chunks, is_done = sse(await post(http, server, body(stream=True)))

    assert is_done
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks)


async def test_streamed_tool_calls_open_each_index_with_id_and_name(server, http):
    server.script(
        tool_calls(
            tool_call("read_file", {"path": "notes/a.txt"}, call_id="call_a"),
            tool_call("shell", '{"command": "ls -la /tmp"}'),
            text="Let me look.",
        )
    )

    chunks, _ = sse(await post(http, server, body(stream=True)))

    fragments = [call for delta in deltas(chunks) for call in delta.get("tool_calls", [])]
    by_index = {index: [f for f in fragments if f["index"] == index] for index in (0, 1)}
    assert [f["index"] for f in fragments] == sorted(f["index"] for f in fragments)
    first = by_index[0][0]
    assert (first["id"], first["function"]["name"]) == ("call_a", "read_file")
    assert by_index[1][0]["id"] == "call_1"  # numbered by the fake
    assert all("id" not in f and "name" not in f["function"] for f in by_index[0][1:])
    assert len(by_index[1]) > 2  # the arguments arrive in fragments
    arguments = ["".join(f["function"]["arguments"] for f in by_index[i]) for i in (0, 1)]
    assert arguments == ['{"path":"notes/a.txt"}', '{"command": "ls -la /tmp"}']
    text = "".join(delta.get("content") or "" for delta in deltas(chunks))
    assert text == "Let me look."
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_calls_in_a_json_completion(server, http):
    server.script(tool_call("shell", {"command": "pwd"}, call_id="call_x"))

    message = (await post(http, server, body())).json()["choices"][0]["message"]

    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "call_x",
            "type": "function",
            "function": {"name": "shell", "arguments": '{"command":"pwd"}'},
        }
    ]


async def test_http_error_answers_with_status_openai_error_body_and_retry_after(server, http):
    server.script(http_error(429, "Rate limit reached", retry_after_s=7))

    response = await post(http, server, body(stream=True))

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["message"] == "Rate limit reached"
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_stream_error_is_an_error_object_inside_a_200_stream(server, http):
    server.script(stream_error("Provider disconnected", text="Partial"))

    response = await post(http, server, body(stream=True))

    assert response.status_code == 200
    chunks, is_done = sse(response)
    assert not is_done
    assert chunks[-1]["error"]["message"] == "Provider disconnected"
    assert chunks[-1]["choices"][0]["finish_reason"] == "error"
    assert "".join(delta.get("content") or "" for delta in deltas(chunks)) == "Partial"


async def test_a_request_past_the_script_is_a_500_and_a_failure(unchecked, http):
    response = await post(http, unchecked, body())

    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    with pytest.raises(AssertionError, match="past the end of the script"):
        unchecked.assert_done()


async def test_leaving_the_block_with_unused_steps_fails():
    with pytest.raises(AssertionError, match="1 scripted step"):
        async with llm_api() as fake:
            fake.script(reply("never asked for"))


async def test_a_body_the_fake_cannot_decode_is_a_400_and_a_failure(unchecked, http):
    response = await post(http, unchecked, {"model": "m", "messages": "not a list"})

    assert response.status_code == 400
    assert unchecked.requests == []
    with pytest.raises(AssertionError, match=r"malformed request body.*\$\.messages"):
        unchecked.assert_done()


async def test_an_unknown_path_is_a_404_and_a_failure(unchecked, http):
    response = await http.get(f"{unchecked.base_url}/embeddings")

    assert response.status_code == 404
    with pytest.raises(AssertionError, match="unexpected request GET /v1/embeddings"):
        unchecked.assert_done()


async def test_with_an_api_key_a_missing_or_wrong_bearer_is_401(http):
    async with llm_api(api_key="sk-right") as fake:
        fake.script(reply("welcome"))
        missing = await post(http, fake, body())
        wrong = await post(http, fake, body(), headers={"Authorization": "Bearer sk-wrong"})
        right = await post(http, fake, body(), headers={"Authorization": "Bearer sk-right"})

    assert [missing.status_code, wrong.status_code, right.status_code] == [401, 401, 200]
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert [request.headers.get("authorization") for request in fake.requests] == [
        None,
        "Bearer sk-wrong",
        "Bearer sk-right",
    ]


async def test_the_tap_records_bodies_and_offers_accessors(server, http):
    server.script(reply("done"))
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "list files"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": '{"files":["a"]}'},
        {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
    ]
    schema = {"type": "object", "properties": {}}
    tools = [{"type": "function", "function": {"name": "ls", "parameters": schema}}]

    await post(http, server, body(messages=messages, tools=tools, tool_choice="auto"))

    (request,) = server.requests
    assert [message.role for message in request.messages] == [m["role"] for m in messages]
    assert request.tools == ["ls"]
    assert [(m.tool_call_id, m.content) for m in request.tool_messages] == [
        ("call_9", '{"files":["a"]}')
    ]
    assert request.last_user_text == "and now?"
    assert request.body["tool_choice"] == "auto"
    assert request.headers["content-type"] == "application/json"


async def test_always_answers_every_request_past_the_script(server, http):
    server.script(reply("scripted"))
    server.always(reply("again"))

    texts = [
        (await post(http, server, body())).json()["choices"][0]["message"]["content"]
        for _ in range(3)
    ]

    assert texts == ["scripted", "again", "again"]


async def test_a_delayed_step_keeps_the_client_waiting(server, http):
    server.script(reply("late", delay_s=30))

    with pytest.raises(httpx.ReadTimeout):
        await post(http, server, body(), timeout=httpx.Timeout(5.0, read=0.2))

    assert len(server.requests) == 1


async def test_busy_time_is_recorded_per_answered_request_with_its_delay(server, http):
    server.script(reply("slow", delay_s=0.2), reply("quick"))

    await post(http, server, body())
    await post(http, server, body(stream=True))

    assert len(server.busy_s) == 2
    assert server.busy_s[0] >= 0.2
    assert server.busy_s[1] < server.busy_s[0]
