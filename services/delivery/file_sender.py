"""Files out (SPEC §12.8): the upload a SendFile becomes, and why a file cannot go.

`auto` picks the Bot API method by media type: JPEG, PNG and WebP as a photo, MP3 and M4A as
audio, MP4 as video, GIF as an animation, anything else as a document. An explicit `send_as` wins,
except that a photo Telegram would refuse (over 10 MB, sides past its limits, not an image) goes
as a document: the tools resolve `auto` to `photo` before they see the pixels. The caption is
rendered like an answer, in parts of 1,024 UTF-16 units: the first rides on the file, the rest
follow as messages.

An output with `more` carries the photos of one tool call: they go as one album when every one
is stored and goes as a photo, else each on its own as above.

Pillow is imported by `photo_fits` itself, the first time a photo is sent, as the session does.
"""

import asyncio
import io
import logging
import math
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

import nats.errors
from msgspec import structs

from services.delivery import render
from services.delivery.bot_api import (
    AlbumPhoto,
    EntityError,
    RejectedError,
    SendMediaGroup,
    SendUpload,
    UploadMethod,
)
from shared import files
from shared.bus import Connection, Envelope
from shared.messages.outbound import SendFile

MB: Final = 1 << 20  # Telegram's megabyte
MAX_FILE_BYTES: Final = 50 * MB  # what a bot may send
MAX_PHOTO_BYTES: Final = 10 * MB
MAX_PHOTO_SIDES_PX: Final = 10_000  # Telegram: width + height
MAX_PHOTO_RATIO: Final = 20  # Telegram: the long side at most 20 times the short one
MAX_CAPTION_UNITS: Final = 1024
HEARTBEAT_S: Final = 3.0  # well inside delivery's ack wait (10 s): an upload may take minutes
BY_TYPE: Final[dict[str, UploadMethod]] = {
    "image/jpeg": "sendPhoto",
    "image/png": "sendPhoto",
    "image/webp": "sendPhoto",
    "audio/mpeg": "sendAudio",
    "audio/mp4": "sendAudio",
    "audio/x-m4a": "sendAudio",
    "audio/m4a": "sendAudio",
    "video/mp4": "sendVideo",
    "image/gif": "sendAnimation",
}
BY_SEND_AS: Final[dict[str, UploadMethod]] = {
    "document": "sendDocument",
    "photo": "sendPhoto",
    "audio": "sendAudio",
    "voice": "sendVoice",
    "video": "sendVideo",
}
T = TypeVar("T")
log = logging.getLogger(__name__)


def method_for(output: SendFile, data: bytes) -> UploadMethod:
    """The Bot API method that sends the file (this module's docstring)."""
    if output.send_as == "auto":
        method = BY_TYPE.get(output.file.media_type.lower(), "sendDocument")
    else:
        method = BY_SEND_AS[output.send_as]
    if method == "sendPhoto" and not photo_fits(data):
        return "sendDocument"
    return method


def photo_fits(data: bytes) -> bool:
    """Whether Telegram takes the bytes as a photo: an image of at most 10 MB within its sides."""
    if len(data) > MAX_PHOTO_BYTES:
        return False
    from PIL import Image, UnidentifiedImageError  # lazy: see the module docstring

    try:
        with warnings.catch_warnings():  # a huge image is refused below, not warned about
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return False
    short, long = sorted((width, height))
    return width + height <= MAX_PHOTO_SIDES_PX and short > 0 and long <= MAX_PHOTO_RATIO * short


def caption_parts(markdown: str) -> tuple[render.Part, list[render.Part]]:
    """The caption on the file, and the parts of a longer caption that follow as messages."""
    parts = render.answer_parts(markdown, MAX_CAPTION_UNITS)
    if not parts:
        return render.Part(text=""), []
    return parts[0], parts[1:]


def upload(output: SendFile, chat_id: int, data: bytes, caption: render.Part) -> SendUpload:
    return SendUpload(
        method=method_for(output, data),
        chat_id=chat_id,
        file_name=output.file.file_name or "file",
        media_type=output.file.media_type or "application/octet-stream",
        data=data,
        caption=caption.text,
        caption_entities=caption.entities,
        message_thread_id=output.chat.thread_id,
    )


def files_of(output: SendFile) -> list[SendFile]:
    """The output as one SendFile per file it carries: its own, then those of `more`."""
    more = [
        structs.replace(
            output, file=offered.attachment, caption=offered.caption, send_as=offered.send_as
        )
        for offered in output.more
    ]
    return [structs.replace(item, more=[]) for item in (output, *more)]


async def album(
    conn: Connection, items: list[SendFile], captions: list[render.Part], chat_id: int
) -> SendMediaGroup | None:
    """The files as one album, or None unless every one is stored and goes as a photo, and all
    of them fit in one request (MAX_FILE_BYTES, as one upload)."""
    if sum(item.file.size for item in items) > MAX_FILE_BYTES:  # the sizes the tools measured
        return None
    photos: list[AlbumPhoto] = []
    for item, caption in zip(items, captions, strict=True):
        data = await files.read_bytes(conn, item.file.object_name)
        if data is None or method_for(item, data) != "sendPhoto":
            return None
        photo = AlbumPhoto(
            file_name=item.file.file_name or "photo",
            media_type=item.file.media_type,
            data=data,
            caption=caption.text,
            caption_entities=caption.entities,
        )
        photos.append(photo)
    if sum(len(photo.data) for photo in photos) > MAX_FILE_BYTES:
        return None
    thread_id = items[0].chat.thread_id
    return SendMediaGroup(chat_id=chat_id, photos=tuple(photos), message_thread_id=thread_id)


async def send_album(
    request: SendMediaGroup, send: Callable[[SendMediaGroup], Awaitable[list[int]]]
) -> tuple[int, ...]:
    """Send the album (its captions as plain text if Telegram refuses their entities): its
    message ids, or () when Telegram refuses it, and its files go one by one instead."""
    try:
        try:
            return tuple(await send(request))
        except EntityError as exc:
            log.warning("album captions refused, sending them as plain text: %s", exc.description)
            plain = tuple(structs.replace(p, caption_entities=()) for p in request.photos)
            return tuple(await send(structs.replace(request, photos=plain)))
    except RejectedError as exc:
        log.warning("album refused, its files go one by one: %s", exc)
        return ()


def unsendable_notice(output: SendFile, data: bytes | None) -> str:
    """What the chat is told when the file is over 50 MB, or (`data` is None while its size is
    within the limit) no longer stored."""
    size = output.file.size if data is None else len(data)
    if size > MAX_FILE_BYTES:
        shown = math.ceil(size / MB)  # rounded up: 50 MB and a byte is not "50"
        return f"⚠️ {output.file.file_name} is {shown} MB; Telegram bots can send files up to 50 MB."
    return file_failure_notice(output, "it is no longer stored")


def file_failure_notice(output: SendFile, reason: str) -> str:
    return f"⚠️ I could not send {output.file.file_name} ({reason})."


async def heartbeating(work: Coroutine[Any, Any, T], envelope: Envelope) -> T:
    """Await `work`, telling the server every HEARTBEAT_S that the output is still in hand."""
    task = asyncio.create_task(work)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=HEARTBEAT_S)
            if not task.done():
                try:
                    await envelope.in_progress()
                except nats.errors.Error:  # the next beat tries again; the work goes on
                    continue
        return task.result()
    finally:
        task.cancel()  # nothing when it is done; else the work ends with its caller
