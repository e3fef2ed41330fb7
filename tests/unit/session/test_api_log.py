"""SPEC §7.6 API logs: model calls against the fake OpenAI server, with `logging.api_bodies` set."""

import logging
import stat
from pathlib import Path

import msgspec
import pytest

from services.session.providers import api_log
from services.session.providers.openai_chat import complete
from services.session.providers.protocol import ProviderError
from shared import config as config_file
from shared.config import Config, LogConfig
from shared.errors import ConfigError
from shared.ids import SessionId, TurnId
from shared.model_config import ModelConfig
from tests.kit.llm_api import http_error, llm_api, reply

SESSION = SessionId("s-1")
TURN = TurnId("t-1")
KEY = "sk-test-very-secret"
EXTRA_KEY = "xk-extra-secret"
ASK: list[dict[str, object]] = [
    {
        "role": "user",
        "content": "hi",
        "metadata": {"session_token": "tok-in-body", "nested": [{"api_key": "ak-in-body"}]},
    }
]


def model_at(base_url: str) -> ModelConfig:
    return ModelConfig(
        provider="openai_chat",
        model="fake-model",
        base_url=base_url,
        api_key=KEY,
        headers={"X-Api-Key": EXTRA_KEY, "X-Title": "Stellaclaw"},
        max_output_tokens=1234,
    )


def config_for(model: ModelConfig, mode: api_log.Mode) -> Config:
    return Config(
        default_model="main",
        models={"spare": model_at("http://127.0.0.1:9"), "main": model},
        logging=LogConfig(api_bodies=mode),
    )


def lines(workdir: Path) -> list[api_log.ApiLine]:
    path = workdir / "logs" / "api" / SESSION / f"{TURN}.jsonl"
    decoder = msgspec.json.Decoder(api_log.ApiLine)
    return [decoder.decode(line) for line in path.read_bytes().splitlines()]


def streamed_text(response_body: str) -> str:
    """The text deltas of a logged SSE body, joined."""
    text = ""
    for line in response_body.splitlines():
        if line.startswith("data: {"):
            for choice in msgspec.json.decode(line.removeprefix("data: "))["choices"]:
                text += choice["delta"].get("content") or ""
    return text


async def test_full_logs_one_redacted_line_per_call(tmp_path, http):
    async with llm_api(api_key=KEY) as fake:
        fake.script(reply("Hello, Ada."))
        model = model_at(fake.base_url)
        async with api_log.for_turn(config_for(model, "full"), tmp_path, SESSION, TURN):
            answer = await complete(http, model, ASK, [])

    assert answer.text == "Hello, Ada."
    assert fake.requests[0].headers["x-api-key"] == EXTRA_KEY  # the wire is untouched
    [line] = lines(tmp_path)
    assert (line.model, line.provider, line.status, line.error) == (
        "main",
        "openai_chat",
        200,
        None,
    )
    assert line.url == fake.base_url + "/chat/completions"
    assert line.request_headers["Authorization"] == "***"
    assert line.request_headers["X-Api-Key"] == "***"
    assert line.request_headers["X-Title"] == "Stellaclaw"
    body = msgspec.json.decode(line.request_body)
    assert body["messages"][0]["content"] == "hi"
    assert body["messages"][0]["metadata"] == {
        "session_token": "***",
        "nested": [{"api_key": "***"}],
    }
    assert body["max_tokens"] == 1234  # a number under a `token` key is no secret
    assert streamed_text(line.response_body) == "Hello, Ada."  # the SSE lines as read
    assert line.response_body.rstrip().endswith("data: [DONE]")
    assert '"prompt_tokens":' in line.response_body
    assert line.duration_s >= 0
    written = (tmp_path / "logs" / "api" / SESSION / f"{TURN}.jsonl").read_text()
    assert KEY not in written
    assert EXTRA_KEY not in written
    assert "tok-in-body" not in written


async def test_files_are_private_and_calls_append_in_order(tmp_path, http):
    async with llm_api() as fake:
        fake.script(reply("one"), http_error(503, "upstream overloaded"))
        model = model_at(fake.base_url)
        async with api_log.for_turn(config_for(model, "full"), tmp_path, SESSION, TURN):
            await complete(http, model, ASK, [])
            with pytest.raises(ProviderError):
                await complete(http, model, ASK, [])

    first, second = lines(tmp_path)
    assert first.status == 200
    assert streamed_text(first.response_body) == "one"
    assert second.status == 503
    assert second.error == "HTTP 503 from 127.0.0.1: upstream overloaded"
    assert msgspec.json.decode(second.response_body)["error"]["message"] == "upstream overloaded"
    api_dir = tmp_path / "logs" / "api"
    assert stat.S_IMODE(api_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((api_dir / SESSION).stat().st_mode) == 0o700
    assert stat.S_IMODE((api_dir / SESSION / f"{TURN}.jsonl").stat().st_mode) == 0o600


async def test_preview_keeps_the_first_12000_characters_of_a_body(tmp_path, http):
    long_ask: list[dict[str, object]] = [{"role": "user", "content": "x" * 30_000}]
    async with llm_api() as fake:
        fake.script(reply("short"))
        model = model_at(fake.base_url)
        async with api_log.for_turn(config_for(model, "preview"), tmp_path, SESSION, TURN):
            await complete(http, model, long_ask, [])

    [line] = lines(tmp_path)
    kept, marker, rest = line.request_body.partition("[… ")
    assert len(kept) == api_log.PREVIEW_CHARS
    assert marker
    assert rest.endswith("more characters not logged]")
    assert "[… " not in line.response_body  # the short answer is whole
    assert line.response_body.rstrip().endswith("data: [DONE]")


async def test_off_writes_nothing(tmp_path, http):
    async with llm_api() as fake:
        fake.script(reply("one"), reply("two"))
        model = model_at(fake.base_url)
        async with api_log.for_turn(config_for(model, "off"), tmp_path, SESSION, TURN):
            assert (await complete(http, model, ASK, [])).text == "one"
        assert (await complete(http, model, ASK, [])).text == "two"  # outside any turn

    assert not (tmp_path / "logs").exists()


async def test_an_unwritable_log_warns_once_and_the_calls_go_on(tmp_path, http, caplog):
    (tmp_path / "logs").write_text("a file where the directory should be")
    async with llm_api() as fake:
        fake.script(reply("one"), reply("two"))
        model = model_at(fake.base_url)
        with caplog.at_level(logging.WARNING, logger=api_log.__name__):
            async with api_log.for_turn(config_for(model, "full"), tmp_path, SESSION, TURN):
                assert (await complete(http, model, ASK, [])).text == "one"
                assert (await complete(http, model, ASK, [])).text == "two"

    warnings = [r for r in caplog.records if r.name == api_log.__name__]
    assert len(warnings) == 1
    assert "not written" in warnings[0].getMessage()


async def test_a_websocket_call_logs_its_frames_one_per_line(tmp_path):
    model = model_at("http://127.0.0.1:9")
    config = config_for(model, "full")
    async with api_log.for_turn(config, tmp_path, SESSION, TURN):
        headers = {"Authorization": "Bearer abc", "chatgpt-account-id": "acct"}
        with api_log.exchange(model, "wss://example.invalid/responses", headers, '{"a":1}'):
            api_log.received('{"type":"response.created","access_token":"tok-123"}')
            api_log.received(b'{"type":"response.completed","usage":{"input_tokens":5}}')

    [line] = lines(tmp_path)
    assert line.request_headers == {"Authorization": "***", "chatgpt-account-id": "acct"}
    assert line.request_body == '{"a":1}'
    assert line.status is None
    assert line.response_body.splitlines() == [
        '{"type":"response.created","access_token":"***"}',
        '{"type":"response.completed","usage":{"input_tokens":5}}',
    ]


def test_sse_data_lines_are_redacted_one_by_one():
    text = 'event: x\ndata: {"token":"abc","n":{"password":["p"]}}\n\ndata: [DONE]\n'

    assert api_log.redact_body(text) == (
        'event: x\ndata: {"token":"***","n":{"password":["***"]}}\n\ndata: [DONE]\n'
    )
    assert api_log.redact_body("not json {") == "not json {"
    deep = '{"a":' * 2000 + "1" + "}" * 2000
    assert api_log.redact_body(deep) == api_log.TOO_DEEP  # never shown unredacted


def test_the_config_key_takes_three_values():
    raw = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "x"}}}
    assert config_file.parse(raw, {}).logging.api_bodies == "off"
    chosen = config_file.parse({**raw, "logging": {"api_bodies": "preview"}}, {})
    assert chosen.logging.api_bodies == "preview"
    with pytest.raises(
        ConfigError,
        match=r"^config: logging\.api_bodies: expected one of full, off, preview, got 'all'$",
    ):
        config_file.parse({**raw, "logging": {"api_bodies": "all"}}, {})
