"""The few Telegram Bot API methods delivery calls, over httpx with msgspec Structs: JSON bodies,
and `multipart/form-data` for file uploads and albums.

Errors are sorted by whose fault they are (shared.errors), and decide what the sender does next:

    error           raised on                          what the sender does
    --------------  ---------------------------------  ---------------------------------
    FloodWaitError  429 Too Many Requests              wait `retry_after_s`, then resend
    TransientError  5xx, network errors, timeouts      nak: the output is retried later
    EntityError     400 about the message's entities   resend the part as plain text
    RejectedError   any other 4xx                      give up and record it: a send tells the
                                                       user, a reaction is only logged

Every URL carries the bot token, so no error text ever contains it (it reads `***`), and httpx's
own exceptions, which carry the request and its URL, are never chained onto ours.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, Generic, Literal, Protocol, TypeVar

import httpx
import msgspec

from shared.errors import InputError, TransientError

JSON_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
ACTION_TIMEOUT = httpx.Timeout(10.0)
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
REDACTED = "***"
T = TypeVar("T")


class MessageEntity(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A span of formatting; `offset` and `length` count UTF-16 code units."""

    type: str
    offset: int
    length: int
    url: str | None = None
    language: str | None = None
    custom_emoji_id: str | None = None


class LinkPreviewOptions(msgspec.Struct, frozen=True, kw_only=True):
    is_disabled: bool


class ReplyParameters(msgspec.Struct, frozen=True, kw_only=True):
    message_id: int
    allow_sending_without_reply: bool = True


NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class InlineKeyboardButton(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    callback_data: str


class InlineKeyboardMarkup(msgspec.Struct, frozen=True, kw_only=True):
    inline_keyboard: tuple[tuple[InlineKeyboardButton, ...], ...]


class SendMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The body of `sendMessage`; text with explicit entities, never a parse mode."""

    chat_id: int
    text: str
    link_preview_options: LinkPreviewOptions
    entities: tuple[MessageEntity, ...] = ()
    message_thread_id: int | None = None
    reply_parameters: ReplyParameters | None = None
    reply_markup: InlineKeyboardMarkup | None = None


class EditMessageText(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    chat_id: int
    message_id: int
    text: str
    link_preview_options: LinkPreviewOptions


class DeleteMessage(msgspec.Struct, frozen=True, kw_only=True):
    chat_id: int
    message_id: int


class SendMessageDraft(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A private chat's draft of the answer being written (SPEC §12.7 streaming)."""

    chat_id: int
    draft_id: int  # the same for one turn
    text: str
    message_thread_id: int | None = None


class SendChatAction(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    chat_id: int
    action: Literal["typing"]  # no default: omit_defaults would leave it out of the body
    message_thread_id: int | None = None


UploadMethod = Literal[
    "sendPhoto", "sendDocument", "sendAudio", "sendVoice", "sendVideo", "sendAnimation"
]
# The form field that carries the file is named after the method.
UPLOAD_FIELDS: Final[dict[UploadMethod, str]] = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendAudio": "audio",
    "sendVoice": "voice",
    "sendVideo": "video",
    "sendAnimation": "animation",
}


class SendUpload(msgspec.Struct, frozen=True, kw_only=True):
    """One file sent with `method` as a multipart upload; the caption has explicit entities."""

    method: UploadMethod
    chat_id: int
    file_name: str
    media_type: str
    data: bytes
    caption: str = ""
    caption_entities: tuple[MessageEntity, ...] = ()
    message_thread_id: int | None = None


class AlbumPhoto(msgspec.Struct, frozen=True, kw_only=True):
    """One photo of an album; its caption (if any) has explicit entities."""

    file_name: str
    media_type: str
    data: bytes
    caption: str = ""
    caption_entities: tuple[MessageEntity, ...] = ()


class SendMediaGroup(msgspec.Struct, frozen=True, kw_only=True):
    """2-10 photos sent as one album, each uploaded as a part of one multipart request."""

    chat_id: int
    photos: tuple[AlbumPhoto, ...]
    message_thread_id: int | None = None


class InputMediaPhoto(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An album item in the `media` field; `media` names its part: `attach://f0`."""

    type: Literal["photo"]  # no default: omit_defaults would leave it out of the body
    media: str
    caption: str = ""
    caption_entities: tuple[MessageEntity, ...] = ()


class ReactionTypeEmoji(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="emoji"):
    emoji: str


class SetMessageReaction(msgspec.Struct, frozen=True, kw_only=True):
    """The body of `setMessageReaction`: replaces the bot's reaction on one message."""

    chat_id: int
    message_id: int
    reaction: tuple[ReactionTypeEmoji, ...]  # bots may set one; empty removes the bot's own


class ResponseParameters(msgspec.Struct, frozen=True, kw_only=True):
    retry_after: float | None = None
    migrate_to_chat_id: int | None = None


class SentMessage(msgspec.Struct, frozen=True, kw_only=True):
    message_id: int


class Response(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """Every Bot API answer: `result` when `ok`, else `error_code`, `description`, `parameters`."""

    ok: bool
    result: T | None = None
    error_code: int | None = None
    description: str = ""
    parameters: ResponseParameters | None = None


MESSAGE_RESPONSE: msgspec.json.Decoder[Response[SentMessage]] = msgspec.json.Decoder(
    Response[SentMessage]
)
MESSAGES_RESPONSE: msgspec.json.Decoder[Response[list[SentMessage]]] = msgspec.json.Decoder(
    Response[list[SentMessage]]
)
BOOL_RESPONSE: msgspec.json.Decoder[Response[bool]] = msgspec.json.Decoder(Response[bool])
ANY_RESPONSE: msgspec.json.Decoder[Response[msgspec.Raw]] = msgspec.json.Decoder(
    Response[msgspec.Raw]
)
_ENCODER = msgspec.json.Encoder()


class FloodWaitError(TransientError):
    """Telegram's flood control: the same request may be repeated after `retry_after_s`."""


class RejectedError(InputError):
    """Telegram refused the request for good; sending it again cannot succeed."""

    def __init__(self, message: str, *, status: int, description: str) -> None:
        super().__init__(message)
        self.status = status
        self.description = description


class EntityError(RejectedError):
    """Telegram refused the message's entities; the same text without them may pass."""


class TelegramApi(Protocol):
    """What delivery needs from Telegram; the httpx client below and test fakes both meet it."""

    async def send_message(self, request: SendMessage) -> int:
        """Send one message; returns its message id."""
        ...

    async def send_upload(self, request: SendUpload) -> int:
        """Upload one file (a photo, a document, ...); returns its message id."""
        ...

    async def send_media_group(self, request: SendMediaGroup) -> list[int]:
        """Send photos as one album; returns their message ids, in order."""
        ...

    async def send_chat_action(self, request: SendChatAction) -> None: ...

    async def set_message_reaction(self, request: SetMessageReaction) -> None: ...

    async def edit_message_text(self, request: EditMessageText) -> None: ...

    async def delete_message(self, request: DeleteMessage) -> None: ...

    async def send_message_draft(self, request: SendMessageDraft) -> None: ...


class HttpTelegramApi:
    """The Bot API over one pooled httpx client. Open it with `open_api`."""

    def __init__(self, client: httpx.AsyncClient, api_base: str, token: str) -> None:
        self._client = client
        self._base = f"{api_base.rstrip('/')}/bot{token}"
        self._token = token

    async def send_message(self, request: SendMessage) -> int:
        body = await self._call("sendMessage", _ENCODER.encode(request), JSON_TIMEOUT)
        response = _decode(MESSAGE_RESPONSE, "sendMessage", body)
        if response.result is None:
            raise TransientError("telegram sendMessage: an ok answer without a message")
        return response.result.message_id

    async def send_upload(self, request: SendUpload) -> int:
        fields = {"chat_id": str(request.chat_id)}
        if request.message_thread_id is not None:
            fields["message_thread_id"] = str(request.message_thread_id)
        if request.caption:
            fields["caption"] = request.caption
        if request.caption_entities:
            fields["caption_entities"] = _ENCODER.encode(request.caption_entities).decode()
        upload = (request.file_name, request.data, request.media_type)
        body = await self._post_form(
            request.method, fields, {UPLOAD_FIELDS[request.method]: upload}
        )
        response = _decode(MESSAGE_RESPONSE, request.method, body)
        if response.result is None:
            raise TransientError(f"telegram {request.method}: an ok answer without a message")
        return response.result.message_id

    async def send_media_group(self, request: SendMediaGroup) -> list[int]:
        media = [
            InputMediaPhoto(
                type="photo",
                media=f"attach://f{number}",
                caption=photo.caption,
                caption_entities=photo.caption_entities,
            )
            for number, photo in enumerate(request.photos)
        ]
        fields = {"chat_id": str(request.chat_id), "media": _ENCODER.encode(media).decode()}
        if request.message_thread_id is not None:
            fields["message_thread_id"] = str(request.message_thread_id)
        parts = {
            f"f{number}": (photo.file_name, photo.data, photo.media_type)
            for number, photo in enumerate(request.photos)
        }
        body = await self._post_form("sendMediaGroup", fields, parts)
        response = _decode(MESSAGES_RESPONSE, "sendMediaGroup", body)
        if not response.result:
            raise TransientError("telegram sendMediaGroup: an ok answer without messages")
        return [message.message_id for message in response.result]

    async def send_chat_action(self, request: SendChatAction) -> None:
        body = await self._call("sendChatAction", _ENCODER.encode(request), ACTION_TIMEOUT)
        _decode(BOOL_RESPONSE, "sendChatAction", body)

    async def set_message_reaction(self, request: SetMessageReaction) -> None:
        body = await self._call("setMessageReaction", _ENCODER.encode(request), ACTION_TIMEOUT)
        _decode(BOOL_RESPONSE, "setMessageReaction", body)

    async def edit_message_text(self, request: EditMessageText) -> None:
        await self._json_call("editMessageText", _ENCODER.encode(request))

    async def delete_message(self, request: DeleteMessage) -> None:
        await self._json_call("deleteMessage", _ENCODER.encode(request))

    async def send_message_draft(self, request: SendMessageDraft) -> None:
        await self._json_call("sendMessageDraft", _ENCODER.encode(request))

    async def _json_call(self, method: str, payload: bytes) -> None:
        """A call whose answer only says it worked (True, or the edited message)."""
        body = await self._call(method, payload, JSON_TIMEOUT)
        _decode(ANY_RESPONSE, method, body)

    async def _call(
        self, method: str, payload: bytes, http_timeout: httpx.Timeout
    ) -> httpx.Response:
        try:
            return await self._client.post(
                f"{self._base}/{method}",
                content=payload,
                headers={"Content-Type": "application/json"},
                timeout=http_timeout,
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(method, exc) from None

    async def _post_form(
        self, method: str, fields: dict[str, str], parts: dict[str, tuple[str, bytes, str]]
    ) -> httpx.Response:
        """A multipart call: form `fields` and file `parts` (name: file name, bytes, type)."""
        try:
            return await self._client.post(
                f"{self._base}/{method}", data=fields, files=parts, timeout=UPLOAD_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(method, exc) from None

    def _unreachable(self, method: str, exc: httpx.HTTPError) -> TransientError:
        reason = redact(f"{type(exc).__name__}: {exc}", self._token)
        return TransientError(f"telegram {method}: {reason}")


def _decode(
    decoder: msgspec.json.Decoder[Response[T]], method: str, http: httpx.Response
) -> Response[T]:
    """The answer when `ok`, else the error its status and description call for."""
    try:
        response = decoder.decode(http.content)
    except msgspec.DecodeError:
        if http.status_code < 500 and http.status_code != 429:
            raise RejectedError(
                f"telegram {method}: HTTP {http.status_code} with an unreadable body",
                status=http.status_code,
                description=f"HTTP {http.status_code}",
            ) from None
        raise TransientError(f"telegram {method}: HTTP {http.status_code}") from None
    if response.ok:
        return response
    raise classify(method, response.error_code or http.status_code, response)


def classify(method: str, status: int, response: Response[T]) -> Exception:
    """The error for a refused call, by whose fault it is (the table in this module's docstring)."""
    description = response.description or f"HTTP {status}"
    message = f"telegram {method}: {status} {description}"
    if status == 429:
        parameters = response.parameters or ResponseParameters()
        return FloodWaitError(message, retry_after_s=parameters.retry_after or 1.0)
    if status >= 500 or status < 400:
        return TransientError(message)
    if status == 400 and "entit" in description.lower():
        return EntityError(message, status=status, description=description)
    return RejectedError(message, status=status, description=description)


def redact(text: str, token: str) -> str:
    return text.replace(token, REDACTED) if token else text


@asynccontextmanager
async def open_api(api_base: str, token: str) -> AsyncIterator[HttpTelegramApi]:
    """A Bot API client for one bot; its connections close when the block ends."""
    async with httpx.AsyncClient(timeout=JSON_TIMEOUT) as client:
        yield HttpTelegramApi(client, api_base, token)
