"""What `image_load`, `pdf_load` and `audio_load` share (SPEC §5.5): the per-batch limit, the
bounded read of the file (from the workspace, or over SFTP from the call's remote), and the
attachment that carries the file to the model (SPEC §8.3) through `sc_files`."""

import asyncio
from pathlib import PurePosixPath

from services.tools import context, fs
from services.tools.results import ToolError
from services.tools.workspace import RemoteTarget, ToolCall, remote_for
from shared.messages.contract import Attachment

MIB = 1 << 20


def check_position(call: ToolCall, tool: str, max_per_batch: int) -> None:
    """A batch holds at most `max_per_batch` calls of `tool`; later ones fail at once."""
    position = call.position_in_batch
    if position > max_per_batch:
        raise ToolError(
            "limit_reached",
            f"at most {max_per_batch} {tool} calls per batch; this is call {position} "
            f"(max_per_batch: {max_per_batch}, position_in_batch: {position})",
        )


async def read(call: ToolCall, path: str, max_bytes: int, tool: str) -> bytes:
    """The file's bytes, from the workspace or the call's remote; over `max_bytes` it is
    `too_large`, in words that name the limit."""
    target = remote_for(call, path)
    try:
        if target is None:
            return await asyncio.to_thread(fs.read_bytes, call, path, max_bytes)
        return await read_remote(call, target, path, max_bytes)
    except ToolError as exc:
        if exc.kind != "too_large":
            raise
        raise ToolError(
            "too_large", f"{path} is over {max_bytes / MIB:g} MiB, the {tool} limit"
        ) from None


async def read_remote(call: ToolCall, target: RemoteTarget, path: str, max_bytes: int) -> bytes:
    """A file's bytes from the call's SSH remote over SFTP (over `max_bytes`: `too_large`)."""
    from services.tools.remote import on_remote  # asyncssh: remote calls only

    async with on_remote.files(call, target) as files:
        return await files.read_bytes(path, max_bytes)


def file_name(path: str, suffix: str | None = None) -> str:
    """The name the attachment goes by: the path's last part, its suffix replaced if given."""
    name = PurePosixPath(path).name or "file"
    if suffix is None:
        return name
    return (PurePosixPath(name).stem or "file") + suffix


async def attach(call: ToolCall, path: str, name: str, media_type: str, data: bytes) -> Attachment:
    """Put `data` in sc_files and describe it for the session, which shows it to the model."""
    object_name = context.object_name(call.conversation_id, call.call_id, name)
    await call.runner.store_file(object_name, data)
    return Attachment(
        object_name=object_name,
        file_name=name,
        media_type=media_type,
        size=len(data),
        path=path,
    )
