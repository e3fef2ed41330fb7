"""`send_file` (SPEC §5.6), the runner's side: read a workspace file race-free (or over SFTP from
the call's remote), store it in sc_files and offer it to the user; the session puts it on the
conversation's outputs in order.

`auto` picks how Telegram shows it (SPEC §12.8): JPEG, PNG and WebP up to 10 MB as a photo (the
sender still falls back to a document for sides over 10,000 px), MP3 and M4A as audio, MP4 as
video, everything else (OGG too: a voice message is only sent when asked for) as a document.
"""

import asyncio
import math
import mimetypes
import os
import posixpath
import stat
from typing import Annotated

import msgspec
from msgspec import Meta

from services.tools import fs
from services.tools.context import object_name
from services.tools.results import Attached, Result, ToolError
from services.tools.workspace import RemoteTarget, ToolCall, remote_for
from shared.messages.contract import Attachment
from shared.messages.tools import FileToSend, SendAs

MB = 1 << 20  # Telegram's megabyte
MAX_FILE_BYTES = 50 * MB  # what a bot may send
MAX_PHOTO_BYTES = 10 * MB
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
AUDIO_TYPES = ("audio/mpeg", "audio/mp4", "audio/x-m4a", "audio/m4a")
VIDEO_TYPES = ("video/mp4",)
DIRECTORY = "send_file needs a file; archive the directory first (tar czf)"


class SendFileArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Send a workspace file to the user, in order with your other messages (before this turn's
    answer). `as` picks how it is shown: by default photos, audio and videos by their type,
    anything else as a document. At most 50 MB; archive a directory first."""

    file_path: Annotated[str, Meta(min_length=1, description="the file, relative to the workspace")]
    caption: Annotated[str, Meta(description="Markdown shown with the file (optional)")] = ""
    send_as: Annotated[
        SendAs, Meta(description="auto (default), document, photo, audio, voice or video")
    ] = msgspec.field(default="auto", name="as")


class SendFileResult(Result, frozen=True, kw_only=True):
    queued: bool
    file_path: str
    size_bytes: int
    send_as: SendAs = msgspec.field(name="as")


class Read(msgspec.Struct, frozen=True, kw_only=True):
    """The file as it was read: its name and bytes."""

    file_name: str
    data: bytes


async def send_file(args: SendFileArgs, call: ToolCall) -> Attached:
    target = remote_for(call, args.file_path)
    if target is None:
        read = await asyncio.to_thread(read_file, call, args.file_path)
    else:
        read = await read_remote(call, target, args.file_path)
    media_type = guess_media_type(read.file_name)
    send_as = pick(media_type, len(read.data)) if args.send_as == "auto" else args.send_as
    name = object_name(call.conversation_id, call.call_id, read.file_name)
    await call.runner.store_file(name, read.data)
    attachment = Attachment(
        object_name=name,
        file_name=read.file_name,
        media_type=media_type,
        size=len(read.data),
        path=args.file_path,
    )
    result = SendFileResult(
        queued=True, file_path=args.file_path, size_bytes=len(read.data), send_as=send_as
    )
    offered = FileToSend(attachment=attachment, caption=args.caption, send_as=send_as)
    return Attached(result=result, sends=[offered])


def read_file(call: ToolCall, path: str) -> Read:
    """The whole file through one fd, so what is checked is what is read (`O_NONBLOCK`: opening
    a FIFO must not wait for a writer)."""
    try:
        fd, end = fs.open_file(call, path, os.O_RDONLY | os.O_NONBLOCK)
    except ToolError as exc:
        if str(exc) == f"{path} is a directory":  # the workspace itself, `shared`
            raise ToolError("invalid_arguments", DIRECTORY) from None
        raise
    file_name = end.name
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ToolError("invalid_arguments", DIRECTORY)
        if not stat.S_ISREG(info.st_mode):
            raise ToolError("invalid_arguments", f"{end.shown} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise too_large(file_name, info.st_size)
        with os.fdopen(fd, "rb", closefd=False) as source:
            data = source.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:  # it grew while it was read
        raise too_large(file_name, len(data))
    return Read(file_name=file_name, data=data)


async def read_remote(call: ToolCall, target: RemoteTarget, path: str) -> Read:
    """The whole file from the call's SSH remote over SFTP, its size checked before the read."""
    from services.tools.remote import on_remote  # asyncssh: remote calls only

    async with on_remote.files(call, target) as files:
        info = await files.stat(path)
        if info is None:
            raise ToolError("not_found", f"{path} does not exist")
        if info.is_dir:
            raise ToolError("invalid_arguments", DIRECTORY)
        if not info.is_file:
            raise ToolError("invalid_arguments", f"{path} is not a regular file")
        file_name = posixpath.basename(files.resolve(path))
        if info.size > MAX_FILE_BYTES:
            raise too_large(file_name, info.size)
        try:
            data = await files.read_bytes(path, MAX_FILE_BYTES)
        except ToolError as exc:
            if exc.kind == "too_large":  # it grew while it was read
                raise too_large(file_name, MAX_FILE_BYTES + 1) from None
            raise
    return Read(file_name=file_name, data=data)


def too_large(file_name: str, size: int) -> ToolError:
    shown = math.ceil(size / MB)  # rounded up: 50 MB and a byte is not "50"
    return ToolError(
        "too_large", f"{file_name} is {shown} MB; Telegram bots can send files up to 50 MB"
    )


def guess_media_type(file_name: str) -> str:
    kind, encoding = mimetypes.guess_type(file_name, strict=False)
    if encoding == "gzip":
        return "application/gzip"
    return kind or "application/octet-stream"


def pick(media_type: str, size: int) -> SendAs:
    """How `auto` sends a file of this type and size (SPEC §12.8)."""
    if media_type in PHOTO_TYPES and size <= MAX_PHOTO_BYTES:
        return "photo"
    if media_type in AUDIO_TYPES:
        return "audio"
    if media_type in VIDEO_TYPES:
        return "video"
    return "document"
