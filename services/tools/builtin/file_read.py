"""`file_read` (SPEC §5.1): a UTF-8 text file as numbered lines, read in windows."""

import asyncio
import io
import mimetypes
import os
import stat
from typing import Annotated, BinaryIO

import msgspec
from msgspec import UNSET, Meta, UnsetType

from services.tools import fs
from services.tools.results import Result, ToolError
from services.tools.spill import capped
from services.tools.workspace import RemoteTarget, ToolCall, remote_for

MAX_OUTPUT_BYTES = 256 * 1024  # also the size above which a whole-file read is refused
MAX_LINE_CHARS = 2000
DEFAULT_LIMIT = 2000
BINARY_PROBE_BYTES = 8192
COUNT_CHUNK = 1 << 20
REMOTE_READ_BYTES = 64 << 20  # a remote file is fetched whole, then windowed


class FileReadArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read a UTF-8 text file from the workspace as numbered lines (`<n>: <text>`). Read a file
    over 256 KiB in windows with offset and limit."""

    file_path: Annotated[str, Meta(min_length=1, description="the file, relative to the workspace")]
    offset: (
        Annotated[int, Meta(ge=1, description="first line, 1-based (default 1)")] | UnsetType
    ) = UNSET
    limit: Annotated[int, Meta(ge=1, le=2000, description="lines to read (default 2000)")] | (
        UnsetType
    ) = UNSET


class FileReadResult(Result, frozen=True, kw_only=True):
    file_path: str
    start_line: int
    end_line: int
    total_lines: int
    content: str
    more: bool = False  # lines follow end_line
    truncated_lines: bool = False  # a line over 2,000 chars was cut with `…`
    truncated_bytes: bool = False  # the output reached 256 KiB
    decoding_errors: bool = False  # invalid bytes are shown as U+FFFD


class Window(msgspec.Struct, frozen=True, kw_only=True):
    lines: list[str]
    total_lines: int
    truncated_lines: bool
    truncated_bytes: bool
    decoding_errors: bool


async def file_read(args: FileReadArgs, call: ToolCall) -> FileReadResult:
    first = args.offset or 1
    target = remote_for(call, args.file_path)
    if target is not None:
        window = await read_remote(call, target, args, first)
    else:
        window = await asyncio.to_thread(read, call, args, first)
    if first > max(window.total_lines, 1):
        raise ToolError(
            "invalid_arguments",
            f"offset {first} is past the end of {args.file_path} ({window.total_lines} lines)",
        )
    end_line = first + len(window.lines) - 1
    return FileReadResult(
        file_path=args.file_path,
        start_line=first,
        end_line=end_line,
        total_lines=window.total_lines,
        content=await capped("\n".join(window.lines), call),
        more=window.total_lines > end_line,
        truncated_lines=window.truncated_lines,
        truncated_bytes=window.truncated_bytes,
        decoding_errors=window.decoding_errors,
    )


async def read_remote(
    call: ToolCall, target: RemoteTarget, args: FileReadArgs, first: int
) -> Window:
    """The same read on the call's SSH remote: the file fetched over SFTP (up to
    REMOTE_READ_BYTES), then windowed here."""
    from services.tools.remote import on_remote  # asyncssh: remote calls only

    async with on_remote.files(call, target) as files:
        info = await files.stat(args.file_path)
        if info is None:
            raise ToolError("not_found", f"{args.file_path} does not exist")
        if info.is_dir:
            raise ToolError("invalid_arguments", f"{args.file_path} is a directory; use ls")
        check_whole_read(args, info.size)
        data = await files.read_bytes(args.file_path, REMOTE_READ_BYTES)
    if b"\0" in data[:BINARY_PROBE_BYTES]:
        media = mimetypes.guess_type(args.file_path)[0] or "application/octet-stream"
        message = f"{args.file_path} looks binary ({media}); use image_load, pdf_load or shell"
        raise ToolError("not_text", message)
    return read_window(io.BytesIO(data), first, args.limit or DEFAULT_LIMIT)


def check_whole_read(args: FileReadArgs, size: int) -> None:
    """A file over 256 KiB read with neither offset nor limit is `too_large` (SPEC §5.1)."""
    if size > MAX_OUTPUT_BYTES and args.offset is UNSET and args.limit is UNSET:
        shown = f"{size / 1024:.0f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MiB"
        message = f"{args.file_path} is {shown}; read it in windows with offset and limit"
        raise ToolError("too_large", message)


def read(call: ToolCall, args: FileReadArgs, first: int) -> Window:
    """The file opened once (race-free), checked for what SPEC §5.1 refuses, then read."""
    name = args.file_path
    fd, _ = fs.open_file(call, name, os.O_RDONLY)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "is a directory; use ls" if stat.S_ISDIR(info.st_mode) else "is not a regular file"
        raise ToolError("invalid_arguments", f"{name} {what}")
    with os.fdopen(fd, "rb") as source:
        if b"\0" in source.read(BINARY_PROBE_BYTES):
            media = mimetypes.guess_type(name)[0] or "application/octet-stream"
            raise ToolError(
                "not_text", f"{name} looks binary ({media}); use image_load, pdf_load or shell"
            )
        check_whole_read(args, info.st_size)
        source.seek(0)
        return read_window(source, first, args.limit or DEFAULT_LIMIT)


def read_window(source: BinaryIO, first: int, count: int) -> Window:
    """Lines `first` to `first + count - 1` rendered as `<n>: <text>`, and the file's line count."""
    lines: list[str] = []
    size = 0
    number = 0
    cut = bad = full = False
    for raw in source:
        number += 1
        if number < first:
            continue
        text, was_cut, had_bad = render(number, raw)
        full = size + len(text.encode()) + 1 > MAX_OUTPUT_BYTES
        if full:
            break
        lines.append(text)
        size += len(text.encode()) + 1
        cut, bad = cut or was_cut, bad or had_bad
        if len(lines) == count:
            break
    number += count_lines(source)
    return Window(
        lines=lines,
        total_lines=number,
        truncated_lines=cut,
        truncated_bytes=full,
        decoding_errors=bad,
    )


def render(number: int, raw: bytes) -> tuple[str, bool, bool]:
    """One line as `<n>: <text>`; also whether it was cut and whether it held invalid bytes."""
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    try:
        text, had_bad = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, had_bad = raw.decode("utf-8", errors="replace"), True
    was_cut = len(text) > MAX_LINE_CHARS
    if was_cut:
        text = text[:MAX_LINE_CHARS] + "…"
    return f"{number}: {text}", was_cut, had_bad


def count_lines(source: BinaryIO) -> int:
    """The lines left in `source` (a last line without a newline counts)."""
    count = 0
    last = b"\n"
    while chunk := source.read(COUNT_CHUNK):
        count += chunk.count(b"\n")
        last = chunk[-1:]
    return count + (last != b"\n")
