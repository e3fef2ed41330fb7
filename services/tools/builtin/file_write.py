"""`file_write` (SPEC §5.1): write or append a UTF-8 text file, parent directories created.

An overwrite goes through a temp file in the same directory and `os.replace`, so a reader sees the
old file or the new one, never half of it; an existing file keeps its mode.
"""

import asyncio
import math
import os
import stat
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.tools import fs
from services.tools.results import Result, ToolError
from services.tools.workspace import RemoteTarget, ToolCall, remote_for

MIB = 1 << 20
MAX_CONTENT_BYTES = 2 * MIB
WriteMode = Literal["overwrite", "append"]


class FileWriteArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Write a UTF-8 text file in the workspace; parent directories are created. `overwrite` (the
    default) replaces the whole file atomically and keeps its mode; `append` adds to its end. At
    most 2 MiB per call: write a larger file in parts with mode=append."""

    file_path: Annotated[str, Meta(min_length=1, description="the file, relative to the workspace")]
    content: Annotated[str, Meta(description="the text to write, at most 2 MiB as UTF-8")]
    mode: Annotated[
        WriteMode, Meta(description="overwrite the file (default) or append to its end")
    ] = "overwrite"


class FileWriteResult(Result, frozen=True, kw_only=True):
    file_path: str
    mode: WriteMode
    bytes_written: int
    created: bool  # the file did not exist before this call


async def file_write(args: FileWriteArgs, call: ToolCall) -> FileWriteResult:
    data = args.content.encode("utf-8")
    if len(data) > MAX_CONTENT_BYTES:
        shown = math.ceil(len(data) * 10 / MIB) / 10  # rounded up: 2 MiB + 1 byte is not "2.0"
        raise ToolError(
            "too_large",
            f"content is {shown:.1f} MiB; write at most 2 MiB per call"
            " and use mode=append for the rest",
        )
    target = remote_for(call, args.file_path)
    if target is not None:
        created = await write_remote(call, target, data, args)
    else:
        created = await asyncio.to_thread(write, call, data, args)
    return FileWriteResult(
        file_path=args.file_path, mode=args.mode, bytes_written=len(data), created=created
    )


async def write_remote(
    call: ToolCall, target: RemoteTarget, data: bytes, args: FileWriteArgs
) -> bool:
    """The same write on the call's SSH remote, over SFTP; whether the file was created."""
    from services.tools.remote import on_remote  # asyncssh: remote calls only

    async with on_remote.files(call, target) as files:
        if args.mode == "overwrite":
            return await files.write_atomically(args.file_path, data)
        return await files.append(args.file_path, data)


def write(call: ToolCall, data: bytes, args: FileWriteArgs) -> bool:
    """Write or append `data` (race-free, parents made); whether the file was created."""
    name = args.file_path
    try:
        if args.mode == "overwrite":
            return fs.write_atomically(call, name, data)
        with fs.located(call, name, is_write=True, make_parents=True) as end:
            created = not end.is_present
        fd, _ = fs.open_file(call, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "ab") as target:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ToolError("failed", f"{name} is not a regular file")
            target.write(data)
    except OSError as exc:
        raise ToolError("failed", f"could not write {name}: {exc.strerror or exc}") from None
    return created
