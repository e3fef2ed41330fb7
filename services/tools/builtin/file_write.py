"""`file_write` (SPEC §5.1): write or append a UTF-8 text file, parent directories created.

An overwrite goes through a temp file in the same directory and `os.replace`, so a reader sees the
old file or the new one, never half of it; an existing file keeps its mode.
"""

import asyncio
import math
import os
import secrets
import stat
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.tools.results import Result, ToolError
from services.tools.workspace import ToolCall, confine

MIB = 1 << 20
MAX_CONTENT_BYTES = 2 * MIB
NEW_FILE_MODE = 0o666  # what `open()` asks for; the umask takes its share
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
    path = confine(call, args.file_path, is_read=False)
    created = await asyncio.to_thread(write, path, data, args)
    return FileWriteResult(
        file_path=args.file_path, mode=args.mode, bytes_written=len(data), created=created
    )


def write(path: Path, data: bytes, args: FileWriteArgs) -> bool:
    """Write or append `data`; whether the file was created."""
    name = args.file_path
    check_target(path, name)
    make_parents(path, name)
    try:
        if args.mode == "overwrite":
            return replace_atomically(path, data)
        created = not path.exists()
        with path.open("ab") as target:
            target.write(data)
    except OSError as exc:
        raise ToolError("failed", f"could not write {name}: {exc.strerror or exc}") from None
    return created


def check_target(path: Path, name: str) -> None:
    """Refuse what a text write must not replace: a directory or a special file."""
    if path.is_dir():
        raise ToolError("exists", f"{name} is a directory; give the path of a file")
    if path.exists() and not path.is_file():
        raise ToolError("failed", f"{name} is not a regular file")


def make_parents(path: Path, name: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ToolError(
            "exists", f"cannot create the directories of {name}: a file is in the way"
        ) from None


def replace_atomically(path: Path, data: bytes) -> bool:
    """Put `data` at `path` through a temp file beside it and `os.replace`; an existing file keeps
    its mode, a new one gets the umask's. Whether the file was created."""
    try:
        kept_mode: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        kept_mode = None
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
    try:
        with os.fdopen(handle, "wb") as target:
            target.write(data)
            target.flush()
            os.fsync(target.fileno())
            if kept_mode is not None:
                os.fchmod(target.fileno(), kept_mode)
        os.replace(temp, path)
    finally:
        if temp.exists():  # the write or the rename failed: leave no temp file behind
            temp.unlink()
    return kept_mode is None
