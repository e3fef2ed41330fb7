"""The Bot API client at its HTTP edge (httpx's MockTransport): bodies, answers, error classes."""

import httpx
import msgspec
import pytest

from services.delivery.bot_api import (
    NO_PREVIEW,
    EntityError,
    FloodWaitError,
    HttpTelegramApi,
    MessageEntity,
    ReactionTypeEmoji,
    RejectedError,
    ReplyParameters,
    SendChatAction,
    SendMessage,
    SetMessageReaction,
)
from shared.errors import InputError, TransientError

TOKEN = "123456:SECRET-token-value"
BASE = "https://bot-api.example"
HELLO = SendMessage(
    chat_id=42,
    text="Hello bold",
    entities=(MessageEntity(type="bold", offset=6, length=4),),
    link_preview_options=NO_PREVIEW,
)


def api_answering(status: int, body: object, seen: list[httpx.Request] | None = None):
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=msgspec.json.encode(body))

    return HttpTelegramApi(httpx.AsyncClient(transport=httpx.MockTransport(handle)), BASE, TOKEN)


def refusal(status: int, description: str, **parameters: int) -> dict[str, object]:
    body: dict[str, object] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


async def test_send_message_posts_json_with_entities_and_no_parse_mode():
    seen: list[httpx.Request] = []
    api = api_answering(200, {"ok": True, "result": {"message_id": 7, "chat": {"id": 42}}}, seen)
    reply = msgspec.structs.replace(
        HELLO, message_thread_id=9, reply_parameters=ReplyParameters(message_id=3)
    )
    assert await api.send_message(reply) == 7
    [request] = seen
    assert str(request.url) == f"{BASE}/bot{TOKEN}/sendMessage"
    assert request.headers["content-type"] == "application/json"
    assert msgspec.json.decode(request.content) == {
        "chat_id": 42,
        "text": "Hello bold",
        "link_preview_options": {"is_disabled": True},
        "entities": [{"type": "bold", "offset": 6, "length": 4}],
        "message_thread_id": 9,
        "reply_parameters": {"message_id": 3, "allow_sending_without_reply": True},
    }


async def test_send_chat_action_sends_typing_with_a_10_s_timeout():
    seen: list[httpx.Request] = []
    api = api_answering(200, {"ok": True, "result": True}, seen)
    await api.send_chat_action(SendChatAction(chat_id=42, action="typing"))
    [request] = seen
    assert request.url.path.endswith("/sendChatAction")
    assert msgspec.json.decode(request.content) == {"chat_id": 42, "action": "typing"}
    assert request.extensions["timeout"]["read"] == 10.0


async def test_set_message_reaction_sends_one_emoji_reaction():
    seen: list[httpx.Request] = []
    api = api_answering(200, {"ok": True, "result": True}, seen)
    eyes = (ReactionTypeEmoji(emoji="👀"),)
    await api.set_message_reaction(SetMessageReaction(chat_id=42, message_id=5, reaction=eyes))
    [request] = seen
    assert request.url.path.endswith("/setMessageReaction")
    assert msgspec.json.decode(request.content) == {
        "chat_id": 42,
        "message_id": 5,
        "reaction": [{"type": "emoji", "emoji": "👀"}],
    }
    assert request.extensions["timeout"]["read"] == 10.0


async def test_a_refused_reaction_is_permanent():
    api = api_answering(400, refusal(400, "Bad Request: REACTION_INVALID"))
    eyes = (ReactionTypeEmoji(emoji="👀"),)
    with pytest.raises(RejectedError, match="REACTION_INVALID"):
        await api.set_message_reaction(SetMessageReaction(chat_id=42, message_id=5, reaction=eyes))


async def test_429_is_a_flood_wait_with_retry_after():
    api = api_answering(429, refusal(429, "Too Many Requests: retry after 3", retry_after=3))
    with pytest.raises(FloodWaitError, match="retry after 3") as caught:
        await api.send_message(HELLO)
    assert isinstance(caught.value, TransientError)
    assert caught.value.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, refusal(500, "Internal Server Error")), (502, "<html>Bad Gateway</html>")],
)
async def test_server_errors_are_transient(status, body):
    api = api_answering(status, body)
    with pytest.raises(TransientError, match=str(status)) as caught:
        await api.send_message(HELLO)
    assert not isinstance(caught.value, FloodWaitError)


async def test_refused_entities_are_an_entity_error():
    api = api_answering(400, refusal(400, "Bad Request: can't parse entities: Unsupported"))
    with pytest.raises(EntityError, match="can't parse entities") as caught:
        await api.send_message(HELLO)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("status", "description"),
    [(403, "Forbidden: bot was blocked by the user"), (400, "Bad Request: chat not found")],
)
async def test_other_client_errors_are_permanent(status, description):
    api = api_answering(status, refusal(status, description))
    with pytest.raises(RejectedError) as caught:
        await api.send_message(HELLO)
    assert isinstance(caught.value, InputError)
    assert not isinstance(caught.value, EntityError)
    assert caught.value.description == description


async def test_a_network_error_is_transient_and_never_shows_the_token():
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(unreachable))
    api = HttpTelegramApi(client, BASE, TOKEN)
    with pytest.raises(TransientError, match=r"bot\*\*\*/sendMessage") as caught:
        await api.send_message(HELLO)
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
