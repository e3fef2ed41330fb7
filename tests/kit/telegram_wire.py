"""The Bot API wire of the test kit's Telegram server: parameters, records, Telegram's checks.

Parameters arrive in the query string, an urlencoded or multipart form (aiogram: every value a
string, nested objects as JSON strings) or a JSON body (delivery's httpx client); `read_params`
folds them into one dict and `typed` decodes it into a method's parameter Struct. Files, both the
bot's uploads and what users send, are in `tests.kit.telegram_files`.
"""

import asyncio
from collections import defaultdict
from http import HTTPStatus
from typing import Final, Literal, TypeVar

import msgspec
from aiohttp import web

MAX_TEXT_UTF16: Final = 4096
MAX_CAPTION_UTF16: Final = 1024
MAX_BUTTON_DATA_BYTES: Final = 64
GROUP_TITLE: Final = "Stellaclaw testers"
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
_TEXT_PARAMS: Final = {
    "text",
    "caption",
    "parse_mode",
    "action",
    "language_code",
    "file_id",
    "callback_query_id",  # numeric-looking strings, as Telegram's are
}
Buttons = tuple[tuple[tuple[str, str], ...], ...]  # rows of (text, callback_data)


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
    buttons: Buttons = ()  # its inline keyboard, which a test presses with `user_presses`


class CallbackAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """An answerCallbackQuery the bot made."""

    callback_query_id: str
    text: str | None = None
    show_alert: bool = False


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


class InlineKeyboardButton(msgspec.Struct, frozen=True, kw_only=True):
    """A button under a message; the kit serves callback buttons (and refuses url ones)."""

    text: str
    callback_data: str | None = None
    url: str | None = None


class InlineKeyboardMarkup(msgspec.Struct, frozen=True, kw_only=True):
    inline_keyboard: list[list[InlineKeyboardButton]]


class SendMessage(Params, frozen=True, kw_only=True):
    chat_id: int
    text: str = ""
    entities: list[Entity] | None = None
    parse_mode: str | None = None
    message_thread_id: int | None = None
    reply_markup: InlineKeyboardMarkup | None = None


class EditMessageText(Params, frozen=True, kw_only=True):
    chat_id: int
    message_id: int
    text: str = ""
    entities: list[Entity] | None = None
    parse_mode: str | None = None
    reply_markup: InlineKeyboardMarkup | None = None  # none: the edit removes the keyboard


class GetFile(Params, frozen=True, kw_only=True):
    file_id: str


class GetChatMemberCount(Params, frozen=True, kw_only=True):
    chat_id: int


class AnswerCallbackQuery(Params, frozen=True, kw_only=True):
    callback_query_id: str
    text: str | None = None
    show_alert: bool = False


class BotCommand(msgspec.Struct, frozen=True, kw_only=True):
    command: str
    description: str


class BotCommandScope(msgspec.Struct, frozen=True, kw_only=True):
    type: str  # `default`, `all_private_chats`, `all_group_chats`, `chat`, ...


class SetMyCommands(Params, frozen=True, kw_only=True):
    commands: list[BotCommand]
    scope: BotCommandScope | None = None
    language_code: str | None = None


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


class Faults:
    """The errors and delays a test set for the next calls of each method, in one chat or any."""

    def __init__(self) -> None:
        self._faults: defaultdict[tuple[str, int | None], list[Fault]] = defaultdict(list)
        self._delays: dict[str, float] = {}

    def fail_next(self, method: str, fault: Fault, *, times: int, chat_id: int | None) -> None:
        self._faults[(method.lower(), chat_id)].extend([fault] * times)

    def delay(self, method: str, seconds: float) -> None:
        self._delays[method.lower()] = seconds

    async def admit(self, method: str, chat_id: int | None) -> None:
        """Hold the call for its delay, then refuse it with the next fault for its chat, else
        with the next fault for any chat, if any."""
        if seconds := self._delays.get(method.lower()):
            await asyncio.sleep(seconds)
        for key in ((method.lower(), chat_id), (method.lower(), None)):
            if self._faults[key]:
                fault = self._faults[key].pop(0)
                raise BotApiError(fault.status, fault.description, fault.retry_after)


def refusal(status: int, retry_after: int | None, description: str | None) -> Fault:
    """An error as Telegram words it; a 429 says its `retry_after` (1 s unless given)."""
    if status == HTTPStatus.TOO_MANY_REQUESTS and retry_after is None:
        retry_after = 1
    if description is None and retry_after is not None:
        description = f"Too Many Requests: retry after {retry_after}"
    text = description or DESCRIPTIONS.get(status) or HTTPStatus(status).phrase
    return Fault(status=status, description=text, retry_after=retry_after)


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


def chat_of(params: dict[str, object]) -> int | None:
    """The numeric `chat_id` a call names, if any (`@channel` names are not served)."""
    chat_id = params.get("chat_id")
    return chat_id if isinstance(chat_id, int) and not isinstance(chat_id, bool) else None


def bot_user(bot_id: int, username: str, first_name: str = "Stellaclaw") -> dict[str, object]:
    """The bot as getMe describes it."""
    return {
        "id": bot_id,
        "is_bot": True,
        "first_name": first_name,
        "username": username,
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


def chat_object(
    chat_id: int, chat_type: str, first_name: str, *, is_forum: bool, title: str = GROUP_TITLE
) -> dict[str, object]:
    chat: dict[str, object] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = first_name
    else:
        chat["title"] = title
    if is_forum:
        chat["is_forum"] = True
    return chat


def default_chat(chat_id: int) -> dict[str, object]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Ada"}
    return {"id": chat_id, "type": "supergroup", "title": GROUP_TITLE}


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
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise BotApiError(413, "Request Entity Too Large") from None
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


def checked_reactions(params: SetMessageReaction) -> list[ReactionTypeEmoji]:
    """Telegram's checks for a bot: one reaction at most, a real emoji."""
    if len(params.reaction) > 1:
        raise BotApiError(400, "Bad Request: REACTIONS_TOO_MANY")
    if any(not reaction.emoji.strip() for reaction in params.reaction):
        raise BotApiError(400, "Bad Request: REACTION_INVALID")
    return params.reaction


def checked_caption(caption: str, entities: list[Entity] | None) -> tuple[Entity, ...]:
    """Telegram's checks on a caption: at most 1,024 units, entities inside it."""
    if utf16_len(caption) > MAX_CAPTION_UTF16:
        raise BotApiError(400, "Bad Request: message caption is too long")
    return checked(caption, entities) if caption else ()


def checked_buttons(markup: InlineKeyboardMarkup | None) -> Buttons:
    """Telegram's checks on an inline keyboard: each button's callback_data is 1-64 bytes."""
    rows: list[tuple[tuple[str, str], ...]] = []
    for row in markup.inline_keyboard if markup else ():
        for button in row:
            if button.callback_data is None:
                raise BotApiError(400, _NO_CALLBACK if button.url is None else _URL_BUTTON)
            if not 1 <= len(button.callback_data.encode()) <= MAX_BUTTON_DATA_BYTES:
                raise BotApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        rows.append(tuple((button.text, button.callback_data or "") for button in row))
    return tuple(rows)


def keyboard_object(buttons: Buttons) -> dict[str, object]:
    """A message's `reply_markup` as Telegram shows it."""
    keyboard = [[{"text": text, "callback_data": data} for text, data in row] for row in buttons]
    return {"inline_keyboard": keyboard}


_NO_CALLBACK: Final = (
    "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline "
    "keyboard"
)
_URL_BUTTON: Final = "Bad Request: the test kit serves callback buttons only, not url buttons"
