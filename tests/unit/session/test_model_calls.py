"""Retries, fallback and cooldown of model calls (SPEC §7.3), against the fake OpenAI server over
real HTTP."""

import pytest

from services.session.model_calls import Cooldowns, ModelChoice, delay_s
from services.session.providers.protocol import (
    AuthError,
    ContextLengthError,
    ModelRequest,
    ProviderError,
    Retrying,
    StreamEvent,
    TextDelta,
)
from shared import config as config_file
from shared.config import Config
from shared.model_config import RetryConfig
from tests.kit.llm_api import OpenAIChatServer, cut_stream, http_error, reply, stream_error

ASK = ModelRequest(system_prompt="You are a test.", history=[], tools=[])
FAST = {"mode": "exponential", "attempts": 2, "backoff_s": 0.01}


def models(base_url: str, *, fallback: list[str] | None = None, **main: object) -> Config:
    def model(name: str, **extra: object) -> dict[str, object]:
        return {"provider": "openai_chat", "model": f"{name}-model", "base_url": base_url} | extra

    table = {
        "default_model": "main",
        "models": {
            "main": model("main", **({"retry": FAST, "fallback": fallback or []} | main)),
            "spare": model("spare", retry=FAST),
        },
    }
    return config_file.parse(table, {})


class Chat:
    """What the turn tells the chat, and what the stream showed."""

    def __init__(self) -> None:
        self.told: list[str] = []
        self.events: list[StreamEvent] = []

    async def tell(self, text: str) -> None:
        self.told.append(text)


def sent_models(server: OpenAIChatServer) -> list[object]:
    return [request.body["model"] for request in server.requests]


async def test_a_429_is_retried_after_its_retry_after_and_the_stream_restarts(server, http):
    server.script(http_error(429, "slow down", retry_after_s=0.05), reply("ok"))
    chat = Chat()
    choice = ModelChoice(models(server.base_url), http, Cooldowns(), "main", chat.tell)
    answered = await choice.complete(ASK, chat.events.append)
    assert (answered.reply.text, answered.model_name) == ("ok", "main")
    assert sent_models(server) == ["main-model", "main-model"]
    assert chat.events[0] == Retrying(attempt=1)
    assert "".join(e.text for e in chat.events if isinstance(e, TextDelta)) == "ok"
    assert chat.told == []


def shown(events: list[StreamEvent]) -> str:
    """The text a reader of the stream shows: a retry replaces what the last try streamed."""
    text = ""
    for event in events:
        if isinstance(event, Retrying):
            text = ""
        elif isinstance(event, TextDelta):
            text += event.text
    return text


async def test_a_stream_cut_mid_answer_is_retried_and_its_text_replaced_not_repeated(server, http):
    server.script(cut_stream("The answer is fo"), reply("The answer is forty-two."))
    chat = Chat()
    choice = ModelChoice(models(server.base_url), http, Cooldowns(), "main", chat.tell)

    answered = await choice.complete(ASK, chat.events.append)

    assert answered.reply.text == "The answer is forty-two."
    streamed = [e for e in chat.events if isinstance(e, TextDelta)]
    assert "".join(e.text for e in streamed) == "The answer is foThe answer is forty-two."
    assert Retrying(attempt=1) in chat.events
    assert shown(chat.events) == "The answer is forty-two."
    assert len(server.requests) == 2


async def test_after_the_retries_the_turn_falls_back_and_says_so_once(server, http):
    server.script(*[http_error(503, "overloaded")] * 3, reply("from spare"), reply("again"))
    chat = Chat()
    cooldowns = Cooldowns()
    config = models(server.base_url, fallback=["spare"])
    choice = ModelChoice(config, http, cooldowns, "main", chat.tell)
    first = await choice.complete(ASK, chat.events.append)
    second = await choice.complete(ASK, chat.events.append)  # the rest of the turn stays there
    assert (first.model_name, first.reply.text, second.model_name) == (
        "spare",
        "from spare",
        "spare",
    )
    assert sent_models(server) == ["main-model"] * 3 + ["spare-model"] * 2
    assert Retrying(attempt=0) in chat.events  # the stream starts over on the fallback
    assert chat.told == [
        "⚠️ main is unavailable (HTTP 503 from 127.0.0.1 after 3 tries: overloaded); "
        "using spare for this turn."
    ]
    server.script(reply("next turn"))
    later = ModelChoice(config, http, cooldowns, "main", chat.tell)  # main cools down
    assert (await later.complete(ASK, chat.events.append)).model_name == "spare"
    assert len(chat.told) == 1  # a cooling start is not told again


async def test_the_last_model_failing_is_the_turns_failure(server, http):
    server.script(*[stream_error("upstream died")] * 3)
    choice = ModelChoice(models(server.base_url), http, Cooldowns(), "main", Chat().tell)
    with pytest.raises(ProviderError) as caught:
        await choice.complete(ASK, lambda event: None)
    assert caught.value.reason.endswith("after 3 tries: upstream died")
    assert caught.value.model_name == "main"


async def test_a_context_length_error_never_retries_nor_falls_back(server, http):
    server.script(http_error(400, "This model's maximum context length is 8192 tokens."))
    config = models(server.base_url, fallback=["spare"])
    chat = Chat()
    with pytest.raises(ContextLengthError):
        await ModelChoice(config, http, Cooldowns(), "main", chat.tell).complete(ASK, print)
    assert sent_models(server) == ["main-model"]
    assert chat.told == []


async def test_refused_credentials_fall_back_when_configured_and_fail_as_auth_otherwise(
    server, http
):
    server.script(http_error(401, "Incorrect API key provided."), reply("spare here"))
    chat = Chat()
    config = models(server.base_url, fallback=["spare"])
    answered = await ModelChoice(config, http, Cooldowns(), "main", chat.tell).complete(ASK, print)
    assert answered.model_name == "spare"
    assert sent_models(server) == ["main-model", "spare-model"]  # never retried
    server.script(http_error(403, "Forbidden"))
    alone = ModelChoice(models(server.base_url), http, Cooldowns(), "main", chat.tell)
    with pytest.raises(AuthError) as caught:
        await alone.complete(ASK, print)
    assert (caught.value.model_name, caught.value.status) == ("main", 403)


async def test_retry_none_tries_once_and_a_bad_request_is_not_retried(server, http):
    server.script(http_error(503, "overloaded"), http_error(400, "unknown parameter"))
    config = models(server.base_url, retry={"mode": "none"})
    for _ in range(2):
        with pytest.raises(ProviderError):
            await ModelChoice(config, http, Cooldowns(), "main", Chat().tell).complete(ASK, print)
    assert sent_models(server) == ["main-model", "main-model"]


def test_the_waits_follow_the_mode_and_a_retry_after_wins():
    error = ProviderError("HTTP 503")
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0), (9, 30.0)):
        wait = delay_s(RetryConfig(backoff_s=1.0), attempt, error)
        assert base * 0.8 <= wait <= base * 1.2
    assert all(0 <= delay_s(RetryConfig(mode="random"), 1, error) <= 2.0 for _ in range(50))
    limited = ProviderError("HTTP 429", retry_after_s=5.0)
    assert delay_s(RetryConfig(), 1, limited) == 5.0
    assert delay_s(RetryConfig(), 1, ProviderError("HTTP 429", retry_after_s=600)) == 60.0


async def test_the_chats_reasoning_effort_reaches_a_reasoning_model_only(server, http):
    server.script(reply("deep"), reply("plain"))
    chat = Chat()
    thinking = models(
        server.base_url,
        capabilities=["tools", "reasoning"],
        reasoning={"effort": "low", "max_tokens": 2000},
    )
    choice = ModelChoice(thinking, http, Cooldowns(), "main", chat.tell)
    choice.effort = "high"
    await choice.complete(ASK, chat.events.append)
    plain = ModelChoice(models(server.base_url), http, Cooldowns(), "main", chat.tell)
    plain.effort = "high"
    await plain.complete(ASK, chat.events.append)
    first, second = (request.body for request in server.requests)
    assert first["reasoning"] == {"effort": "high"}
    assert "reasoning" not in second
    wanted = choice.model("main").reasoning
    assert wanted is not None
    assert wanted.max_tokens is None  # the effort decides the budget
