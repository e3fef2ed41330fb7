"""A Telegram message's file, fetched into `sc_files` before the message is published (DESIGN §4).

`file_of` finds the one file a message carries and names it as SPEC §2.4 says; `fetch` downloads
it (getFile, then the file URL) and stores it under a name fixed by the update, so a redo after a
crash overwrites the same object and nothing is stored twice. A file over the Bot API's 20 MB
limit is not downloaded: its Attachment says why, and `too_big_notice` is the user's warning
(SPEC §12.3). A clash of names in `upload/` is resolved where the file is placed, not here.

    attachment = await files.fetch(bot, store, conv, update_id, message)  # None: no file
    if attachment is not None and files.is_too_big(attachment):
        notices.append(files.too_big_notice(attachment))
"""

import asyncio
import io
import logging
import mimetypes
import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Final, Literal

import aiohttp
import msgspec
import nats.errors
from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import (
    Animation,
    Audio,
    Document,
    Message,
    PhotoSize,
    Sticker,
    Video,
    VideoNote,
    Voice,
)
from nats.js.object_store import ObjectStore

from shared import subjects
from shared.errors import InputError, TransientError
from shared.messages.contract import Attachment
from shared.redaction import scrub

MAX_DOWNLOAD_BYTES: Final = 20 * 1024 * 1024  # what the Bot API lets a bot download
MAX_NAME_CHARS: Final = 120
DOWNLOAD_TIMEOUT_S: Final = 300  # 20 MB over a slow link
STORE_TIMEOUT_S: Final = 60.0
TOO_BIG: Final = "file too big"  # how the error of a file over the limit starts
LIMIT: Final = "Telegram lets bots download files up to 20 MB"
TELEGRAM_TOO_BIG: Final = "file is too big"  # in the Bot API's refusal of getFile
FileKind = Literal[
    "photo", "document", "audio", "voice", "video", "video_note", "animation", "sticker"
]
Media = PhotoSize | Animation | Document | Audio | Voice | Video | VideoNote | Sticker
# A nameless file's extension and a file's media type when Telegram gives none (SPEC §2.4).
DEFAULTS: Final[dict[FileKind, tuple[str, str]]] = {
    "photo": (".jpg", "image/jpeg"),
    "document": ("", "application/octet-stream"),
    "audio": (".mp3", "audio/mpeg"),
    "voice": (".ogg", "audio/ogg"),
    "video": (".mp4", "video/mp4"),
    "video_note": (".mp4", "video/mp4"),
    "animation": (".mp4", "video/mp4"),
    "sticker": (".webp", "image/webp"),
}
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_MAX_EXTENSION_CHARS: Final = 16  # longer "extensions" are cut like the rest of the name
log = logging.getLogger(__name__)


class IncomingFile(msgspec.Struct, frozen=True, kw_only=True):
    """The one file a Telegram message carries, named as Stellaclaw names it."""

    kind: FileKind
    file_id: str  # what getFile takes
    file_unique_id: str
    file_name: str  # the client's name, else `<kind>_<file_unique_id><extension>`
    media_type: str
    declared_size: int | None  # `file_size` as Telegram reported it, when it did


class DownloadRefusedError(InputError):
    """The Bot API will not give this file (over 20 MB, unknown, gone): a retry cannot help."""

    def __init__(self, reason: str, *, is_too_big: bool = False, size: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.is_too_big = is_too_big
        self.size = size


def file_of(message: Message) -> IncomingFile | None:
    """The file a message carries (a photo's largest size), or None."""
    carried = _carried(message)
    if carried is None:
        return None
    kind, media, client_name, client_type = carried
    extension, default_type = DEFAULTS[kind]
    if isinstance(media, Sticker):
        extension, default_type = _sticker_format(media)
    guessed = mimetypes.guess_type(client_name, strict=False)[0] if client_name else None
    return IncomingFile(
        kind=kind,
        file_id=media.file_id,
        file_unique_id=media.file_unique_id,
        file_name=client_name or f"{kind}_{media.file_unique_id}{extension}",
        media_type=client_type or guessed or default_type,
        declared_size=media.file_size,
    )


def safe_name(name: str) -> str:
    """`name` with only `[A-Za-z0-9._-]` (others become `_`), at most 120 characters, keeping a
    short extension when it must cut."""
    safe = _UNSAFE.sub("_", name)
    if len(safe) <= MAX_NAME_CHARS:
        return safe
    stem, dot, extension = safe.rpartition(".")
    if not dot or not stem or len(extension) > _MAX_EXTENSION_CHARS:
        return safe[:MAX_NAME_CHARS]
    return f"{stem[: MAX_NAME_CHARS - len(extension) - 1]}.{extension}"


def upload_path(name: str, sent_at: datetime) -> str:
    """Where the file goes in the workspace: `upload/<YYYYMMDD-HHMMSS>-<name>`, from the time the
    message was sent (UTC), so a redo gives the same path."""
    return f"upload/{sent_at.astimezone(UTC):%Y%m%d-%H%M%S}-{safe_name(name)}"


async def fetch(
    bot: Bot, store: ObjectStore, conversation_id: str, update_id: int, message: Message
) -> Attachment | None:
    """Download the message's file into sc_files; None when it carries none.

    The object is `<conversation>/<update_id>-<name>`: a redo overwrites it. A refusal by the Bot
    API (over 20 MB, an unknown file) gives an Attachment with `error` set and no object; a
    failure that may pass (network, 5xx, 429, the store) raises TransientError.
    """
    incoming = file_of(message)
    if incoming is None:
        return None
    name = safe_name(incoming.file_name)
    attachment = Attachment(
        object_name=subjects.file_key(conversation_id, f"{update_id}-{name}"),
        file_name=incoming.file_name,
        media_type=incoming.media_type,
        size=incoming.declared_size or 0,
        path=upload_path(name, message.date),
    )
    try:
        data = await download(bot, incoming)
    except DownloadRefusedError as refusal:
        log.info("update %d: the file was refused: %s", update_id, refusal.reason)
        return _refused(attachment, refusal)
    await _store(store, attachment.object_name, data)
    log.info("update %d: stored a %s of %d bytes", update_id, incoming.kind, len(data))
    return msgspec.structs.replace(attachment, size=len(data))


async def download(bot: Bot, incoming: IncomingFile) -> bytes:
    """The file's bytes: getFile, then its file URL; never more than 20 MB.

    Raises DownloadRefusedError when the Bot API refuses it for good, TransientError when it may
    work later. Error texts never carry the bot token.
    """
    if (incoming.declared_size or 0) > MAX_DOWNLOAD_BYTES:
        raise DownloadRefusedError(LIMIT, is_too_big=True, size=incoming.declared_size)
    file_path = await _file_path(bot, incoming)
    buffer = io.BytesIO()
    try:
        await bot.download_file(file_path, buffer, timeout=DOWNLOAD_TIMEOUT_S)
    except aiohttp.ClientResponseError as exc:  # its text holds the URL, and so the token
        reason = f"the file URL answered HTTP {exc.status} {exc.message}"
        if (
            exc.status == HTTPStatus.TOO_MANY_REQUESTS
            or exc.status >= HTTPStatus.INTERNAL_SERVER_ERROR
        ):
            raise TransientError(reason) from None
        raise DownloadRefusedError(reason) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"the file download failed: {type(exc).__name__}") from None
    if buffer.tell() > MAX_DOWNLOAD_BYTES:
        raise DownloadRefusedError(LIMIT, is_too_big=True, size=buffer.tell())
    return buffer.getvalue()


def is_too_big(attachment: Attachment) -> bool:
    """Whether the file was left out for being over the 20 MB limit."""
    return attachment.error.startswith(TOO_BIG)


def too_big_notice(attachment: Attachment) -> str:
    """What the user is told about a file over the limit (SPEC §12.3)."""
    return (
        f"⚠️ {attachment.file_name} is {_megabytes(attachment.size)}; {LIMIT}. "
        "Send a smaller file or a link."
    )


def _carried(message: Message) -> tuple[FileKind, Media, str | None, str | None] | None:
    """The kind, the file, and the name and media type its client gave, if any. An animation
    comes with a `document` too (Telegram's backward compatibility), so it is looked at first."""
    if message.photo:
        return "photo", max(message.photo, key=_area), None, None
    if (animation := message.animation) is not None:
        return "animation", animation, animation.file_name, animation.mime_type
    if (document := message.document) is not None:
        return "document", document, document.file_name, document.mime_type
    if (audio := message.audio) is not None:
        return "audio", audio, audio.file_name, audio.mime_type
    if (voice := message.voice) is not None:
        return "voice", voice, None, voice.mime_type
    if (video := message.video) is not None:
        return "video", video, video.file_name, video.mime_type
    if message.video_note is not None:
        return "video_note", message.video_note, None, None
    if message.sticker is not None:
        return "sticker", message.sticker, None, None
    return None


def _area(size: PhotoSize) -> tuple[int, int]:
    return size.width * size.height, size.file_size or 0


def _sticker_format(sticker: Sticker) -> tuple[str, str]:
    if sticker.is_animated:
        return ".tgs", "application/x-tgsticker"
    if sticker.is_video:
        return ".webm", "video/webm"
    return ".webp", "image/webp"


async def _file_path(bot: Bot, incoming: IncomingFile) -> str:
    """getFile's `file_path`, after its own size check."""
    try:
        found = await bot.get_file(incoming.file_id)
    except TelegramBadRequest as exc:
        if TELEGRAM_TOO_BIG in exc.message:
            raise DownloadRefusedError(
                LIMIT, is_too_big=True, size=incoming.declared_size
            ) from None
        raise DownloadRefusedError(f"the Bot API refused getFile: {exc.message}") from None
    except TelegramRetryAfter as exc:
        raise TransientError("getFile: too many requests", retry_after_s=exc.retry_after) from None
    except (TelegramServerError, TelegramNetworkError) as exc:
        raise TransientError(f"getFile failed: {scrub(exc.message, [bot.token])}") from None
    except TelegramAPIError as exc:  # 401, 403, 404: nothing a retry of this file would change
        raise DownloadRefusedError(f"the Bot API refused getFile: {exc.message}") from None
    if (found.file_size or 0) > MAX_DOWNLOAD_BYTES:
        raise DownloadRefusedError(LIMIT, is_too_big=True, size=found.file_size)
    if not found.file_path:
        raise DownloadRefusedError("the Bot API gave no file_path for the file")
    return found.file_path


async def _store(store: ObjectStore, object_name: str, data: bytes) -> None:
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            await store.put(object_name, data)
    except (TimeoutError, nats.errors.Error) as exc:
        where = subjects.FILES_STORE
        raise TransientError(f"cannot store {object_name!r} in {where}: {exc!r}") from exc


def _refused(attachment: Attachment, refusal: DownloadRefusedError) -> Attachment:
    if refusal.is_too_big:
        size = refusal.size or attachment.size
        error = f"{TOO_BIG}: {_megabytes(size)}; {LIMIT}"
        return msgspec.structs.replace(attachment, object_name="", size=size, error=error)
    return msgspec.structs.replace(attachment, object_name="", error=refusal.reason)


def _megabytes(size: int) -> str:
    """`23.4 MB`; a size Telegram did not report is `over 20 MB`."""
    return f"{size / (1024 * 1024):.1f} MB" if size else "over 20 MB"
