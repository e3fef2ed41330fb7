"""The Bot API wire of the test kit's Telegram server: parameters, records, Telegram's checks.

Parameters arrive in the query string, an urlencoded or multipart form (aiogram: every value a
string, nested objects as JSON strings) or a JSON body (delivery's httpx client); `read_params`
folds them into one dict and `typed` decodes it into a method's parameter Struct. A file upload
(`sendPhoto`, `sendDocument`, ...) is a multipart form whose file part is named after the method;
`read_upload` takes it out and `sent_file` checks it as Telegram does.
"""

import asyncio
import io
import warnings
from typing import Final, Literal, TypeVar

import msgspec
from aiohttp import web
from PIL import Image, UnidentifiedImageError

MAX_TEXT_UTF16: Final = 4096
MAX_CAPTION_UTF16: Final = 1024
MB: Final = 1 << 20
MAX_UPLOAD_BYTES: Final = 50 * MB  # what a bot may send
MAX_PHOTO_BYTES: Final = 10 * MB
MAX_PHOTO_SIDES_PX: Final = 10_000  # width + height
# The upload methods and the form field that carries each one's file.
UPLOAD_FIELDS: Final = {
    "sendphoto": "photo",
    "senddocument": "document",
    "sendaudio": "audio",
    "sendvoice": "voice",
    "sendvideo": "video",
    "sendanimation": "animation",
}
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


class SentFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file upload the server accepted, as it crossed the wire."""

    method: str  # as called: `sendPhoto`, `sendDocument`, ...
    chat_id: int
    message_id: int
    file_name: str
    content_type: str
    data: bytes
    caption: str = ""
    caption_entities: tuple[Entity, ...] = ()
    message_thread_id: int | None = None
    parse_mode: str | None = None
    width: int = 0  # a photo's, read from its bytes
    height: int = 0


class Upload(msgspec.Struct, frozen=True, kw_only=True):
    """The file part of a multipart upload."""

    file_name: str
    content_type: str
    data: bytes


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


class SendUpload(Params, frozen=True, kw_only=True):
    """The parameters of every upload method besides its file."""

    chat_id: int
    caption: str = ""
    caption_entities: list[Entity] | None = None
    parse_mode: str | None = None
    message_thread_id: int | None = None


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


def bot_user(bot_id: int, username: str) -> dict[str, object]:
    """The bot as getMe describes it."""
    return {
        "id": bot_id,
        "is_bot": True,
        "first_name": "Stellaclaw",
        "username": username,
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


def chat_object(
    chat_id: int, chat_type: str, first_name: str, *, is_forum: bool
) -> dict[str, object]:
    chat: dict[str, object] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = first_name
    else:
        chat["title"] = "Stellaclaw testers"
    if is_forum:
        chat["is_forum"] = True
    return chat


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


async def read_upload(request: web.Request, field: str) -> Upload:
    """The file sent in the form part `field` (after `read_params` read the form)."""
    is_form = request.content_type == "multipart/form-data"
    part = (await request.post()).get(field) if is_form else None
    if not isinstance(part, web.FileField):  # a file_id or URL string: not what the kit serves
        raise BotApiError(400, f"Bad Request: there is no {field} in the request")
    data = part.file.read()
    if not data:
        raise BotApiError(400, "Bad Request: file must be non-empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise BotApiError(413, "Request Entity Too Large")
    return Upload(file_name=part.filename, content_type=part.content_type, data=data)


def sent_file(method: str, params: SendUpload, upload: Upload, message_id: int) -> SentFile:
    """The upload as accepted, after Telegram's checks on its caption and (a photo) its image."""
    entities = checked_caption(params.caption, params.caption_entities)
    width, height = photo_size(upload.data) if method.lower() == "sendphoto" else (0, 0)
    return SentFile(
        method=method,
        chat_id=params.chat_id,
        message_id=message_id,
        file_name=upload.file_name,
        content_type=upload.content_type,
        data=upload.data,
        caption=params.caption,
        caption_entities=entities,
        message_thread_id=params.message_thread_id,
        parse_mode=params.parse_mode,
        width=width,
        height=height,
    )


def photo_size(data: bytes) -> tuple[int, int]:
    """A photo's width and height, refused as Telegram refuses a photo it cannot take."""
    if len(data) > MAX_PHOTO_BYTES:
        raise BotApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise BotApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
    if width + height > MAX_PHOTO_SIDES_PX:
        raise BotApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
    return width, height


def media_fields(sent: SentFile) -> dict[str, object]:
    """The fields a sent file adds to its Message: `photo` sizes, `document`, `audio`, ..."""
    ids = {"file_id": f"file-{sent.message_id}", "file_unique_id": f"u{sent.message_id}"}
    size = {"file_size": len(sent.data)}
    named = {**ids, "file_name": sent.file_name, "mime_type": sent.content_type, **size}
    kind = UPLOAD_FIELDS[sent.method.lower()]
    fields: dict[str, object]
    match kind:
        case "photo":
            fields = {"photo": [{**ids, "width": sent.width, "height": sent.height, **size}]}
        case "voice":
            fields = {"voice": {**ids, "duration": 1, "mime_type": sent.content_type, **size}}
        case "audio":
            fields = {"audio": {**named, "duration": 1}}
        case "video" | "animation":
            fields = {kind: {**named, "width": 640, "height": 360, "duration": 1}}
        case _:
            fields = {"document": named}
    if sent.caption:
        fields["caption"] = sent.caption
    if sent.caption_entities:
        fields["caption_entities"] = msgspec.to_builtins(sent.caption_entities)
    return fields
