"""The Bot API wire of the test kit's Telegram server: parameters, records, Telegram's checks.

Parameters arrive in the query string, an urlencoded or multipart form (aiogram: every value a
string, nested objects as JSON strings) or a JSON body (delivery's httpx client); `read_params`
folds them into one dict and `typed` decodes it into a method's parameter Struct.
"""

import asyncio
from typing import Final, Literal, TypeVar

import msgspec
from aiohttp import web

MAX_TEXT_UTF16: Final = 4096
NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
CONFLICT: Final = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running"
)
DESCRIPTIONS: Final = {500: "Internal Server Error", 502: "Bad Gateway", 400: "Bad Request"}
JSON = msgspec.json.Encoder()
JSON_TYPE: Final = "application/json"
# Parameters kept as sent: every other form value is read as JSON where it parses (numbers, arrays).
_TEXT_PARAMS: Final = {"text", "caption", "parse_mode", "action", "language_code"}


class Entity(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A MessageEntity; offsets and lengths count UTF-16 code units."""

    type: str
    offset: int
    length: int
    url: str | None = None
    language: str | None = None
    custom_emoji_id: str | None = None


class SentMessage(msgspec.Struct, frozen=True, kw_only=True):
    """An outgoing message the server accepted: a send, or an edit of an earlier send."""

    method: Literal["sendMessage", "editMessageText"]
    chat_id: int
    message_id: int
    text: str
    entities: tuple[Entity, ...] = ()
    message_thread_id: int | None = None
    parse_mode: str | None = None


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """One request as it crossed the wire: method, decoded parameters, loop time of arrival."""

    method: str
    params: dict[str, object]
    at_s: float


class Params(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the parameter sets; unknown parameters are ignored, as Telegram does."""


class GetUpdates(Params, frozen=True, kw_only=True):
    offset: int | None = None
    limit: int = 100
    timeout: float = 0.0
    allowed_updates: list[str] | None = None


class SendMessage(Params, frozen=True, kw_only=True):
    chat_id: int
    text: str = ""
    entities: list[Entity] | None = None
    parse_mode: str | None = None
    message_thread_id: int | None = None


class EditMessageText(Params, frozen=True, kw_only=True):
    chat_id: int
    message_id: int
    text: str = ""
    entities: list[Entity] | None = None
    parse_mode: str | None = None


class SendChatAction(Params, frozen=True, kw_only=True):
    chat_id: int
    action: str
    message_thread_id: int | None = None


class ReactionTypeEmoji(msgspec.Struct, frozen=True, kw_only=True):
    """The one ReactionType the kit accepts; custom emoji and paid reactions are refused."""

    type: Literal["emoji"]  # required on the wire, so a plain field rather than a msgspec tag
    emoji: str


class SetMessageReaction(Params, frozen=True, kw_only=True):
    chat_id: int
    message_id: int
    reaction: list[ReactionTypeEmoji] = msgspec.field(default_factory=list)  # none: removes
    is_big: bool = False


class Fault(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    description: str
    retry_after: int | None = None


P = TypeVar("P", bound=Params)


class BotApiError(Exception):
    """Answer the request with Telegram's error envelope."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.fault = Fault(status=status, description=description, retry_after=retry_after)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def now_s() -> float:
    return asyncio.get_running_loop().time()


def default_chat(chat_id: int) -> dict[str, object]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Ada"}
    return {"id": chat_id, "type": "supergroup", "title": "Stellaclaw testers"}


def refused(fault: Fault) -> web.Response:
    body: dict[str, object] = {
        "ok": False,
        "error_code": fault.status,
        "description": fault.description,
    }
    if fault.retry_after is not None:
        body["parameters"] = {"retry_after": fault.retry_after}
    return web.Response(status=fault.status, body=JSON.encode(body), content_type=JSON_TYPE)


async def read_params(request: web.Request) -> dict[str, object]:
    """Every parameter, from the query string, a form or a JSON body; form values JSON-decoded."""
    texts: dict[str, str] = dict(request.query)
    params: dict[str, object] = {}
    if request.content_type == JSON_TYPE:
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            raise BotApiError(400, "Bad Request: can't parse JSON") from None
        if not isinstance(body, dict):
            raise BotApiError(400, "Bad Request: parameters must be a JSON object")
        params |= body
    elif request.content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.post()
        texts |= {key: value for key, value in form.items() if isinstance(value, str)}
    for key, text in texts.items():
        params.setdefault(key, text if key in _TEXT_PARAMS else _form_value(text))
    return params


def _form_value(text: str) -> object:
    try:
        value: object = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text
    return value


def typed(params: dict[str, object], kind: type[P]) -> P:
    try:
        return msgspec.convert(params, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise BotApiError(400, f"Bad Request: {exc}") from None


def checked(text: str, entities: list[Entity] | None) -> tuple[Entity, ...]:
    """Telegram's checks on a message text and its entities."""
    if not text.strip():
        raise BotApiError(400, "Bad Request: message text is empty")
    size = utf16_len(text)
    if size > MAX_TEXT_UTF16:
        raise BotApiError(400, "Bad Request: message is too long")
    for entity in entities or ():
        if entity.offset < 0 or entity.length <= 0 or entity.offset + entity.length > size:
            raise BotApiError(
                400,
                f"Bad Request: can't parse entities: {entity.type} entity at offset "
                f"{entity.offset} of length {entity.length} is outside the text of {size} "
                "UTF-16 code units",
            )
    return tuple(entities or ())
