"""`edit` (SPEC §5.1): replace exact text in a UTF-8 text file, or create a missing file.

A file whose every line ends in CRLF is matched with both sides normalized to LF and written back
with CRLF. Bytes that are not UTF-8 pass through unchanged (surrogate escapes), and the file is
replaced atomically with its mode kept.
"""

import asyncio
import os
import stat
from typing import Annotated

import msgspec
from msgspec import Meta

from services.tools import fs
from services.tools.builtin.file_write import MIB
from services.tools.results import Result, ToolError
from services.tools.workspace import RemoteTarget, ToolCall, remote_for

MAX_FILE_BYTES = 10 * MIB
BINARY_PROBE_BYTES = 8192
MAX_LISTED_LINES = 20  # lines named in the several-matches error
ENCODING = "utf-8"
LOSSLESS = "surrogateescape"  # invalid bytes survive a decode and encode round trip


class EditArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Replace exact text in a UTF-8 text file of the workspace (at most 10 MiB). old_text must
    match exactly one place unless replace_all is set; include surrounding lines to make it unique.
    CRLF files are matched as LF and keep CRLF. To create a missing file, set create_if_missing
    with an empty old_text."""

    file_path: Annotated[str, Meta(min_length=1, description="the file, relative to the workspace")]
    old_text: Annotated[
        str, Meta(description='the exact text to replace; "" only with create_if_missing')
    ]
    new_text: Annotated[str, Meta(description="the replacement; must differ from old_text")]
    replace_all: Annotated[
        bool, Meta(description="replace every match (default false: exactly one must match)")
    ] = False
    create_if_missing: Annotated[
        bool, Meta(description='with old_text "", create the missing file holding new_text')
    ] = False


class EditResult(Result, frozen=True, kw_only=True):
    file_path: str
    created: bool
    replacements: int
    bytes_written: int


async def edit(args: EditArgs, call: ToolCall) -> EditResult:
    check_arguments(args)
    target = remote_for(call, args.file_path)
    if target is not None:
        return await edit_remote(args, call, target)
    if args.old_text == "":
        return await asyncio.to_thread(create, call, args)
    return await asyncio.to_thread(replace, call, args)


def check_arguments(args: EditArgs) -> None:
    if args.new_text == args.old_text:
        raise ToolError(
            "invalid_arguments", "new_text is the same as old_text; the edit would change nothing"
        )
    if args.old_text == "" and not args.create_if_missing:
        raise ToolError(
            "invalid_arguments",
            "old_text is empty; give the exact text to replace,"
            " or set create_if_missing to create a missing file",
        )


def create(call: ToolCall, args: EditArgs) -> EditResult:
    """A missing file made with `new_text` (old_text "" and create_if_missing)."""
    name = args.file_path
    with fs.located(call, name, is_write=True, make_parents=True) as end:
        if end.is_present:
            raise ToolError("exists", f"{name} already exists; give old_text to edit it")
    data = args.new_text.encode(ENCODING)
    store(call, name, data)
    return EditResult(file_path=name, created=True, replacements=0, bytes_written=len(data))


def replace(call: ToolCall, args: EditArgs) -> EditResult:
    name = args.file_path
    data, replacements = edited(load(call, name), args)
    store(call, name, data)
    return EditResult(
        file_path=name, created=False, replacements=replacements, bytes_written=len(data)
    )


def edited(text: str, args: EditArgs) -> tuple[bytes, int]:
    """The file's new bytes and the replacements made (CRLF files matched as LF, kept CRLF)."""
    is_crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    if is_crlf:
        text = text.replace("\r\n", "\n")
    old = args.old_text.replace("\r\n", "\n") if is_crlf else args.old_text
    new = args.new_text.replace("\r\n", "\n") if is_crlf else args.new_text
    starts = match_lines(text, old)
    if not starts:
        raise ToolError("not_found", not_found_message(text, old, args.file_path))
    if len(starts) > 1 and not args.replace_all:
        raise ToolError("invalid_arguments", several_message(starts))
    result = text.replace(old, new) if args.replace_all else text.replace(old, new, 1)
    if is_crlf:
        result = result.replace("\n", "\r\n")
    return result.encode(ENCODING, errors=LOSSLESS), len(starts) if args.replace_all else 1


def decoded(data: bytes, name: str) -> str:
    if b"\0" in data[:BINARY_PROBE_BYTES]:
        raise ToolError("not_text", f"{name} looks binary; edit only changes text files")
    return data.decode(ENCODING, errors=LOSSLESS)


async def edit_remote(args: EditArgs, call: ToolCall, target: RemoteTarget) -> EditResult:
    """The same edit on the call's SSH remote, its file read and replaced over SFTP."""
    from services.tools.remote import on_remote  # asyncssh: remote calls only

    name = args.file_path
    async with on_remote.files(call, target) as files:
        if args.old_text == "":
            if await files.stat(name) is not None:
                raise ToolError("exists", f"{name} already exists; give old_text to edit it")
            data = args.new_text.encode(ENCODING)
            await files.write_atomically(name, data)
            return EditResult(file_path=name, created=True, replacements=0, bytes_written=len(data))
        try:
            raw = await files.read_bytes(name, MAX_FILE_BYTES)
        except ToolError as exc:
            if exc.kind == "too_large":
                raise ToolError(
                    "too_large",
                    f"{name} is over 10 MiB; edit takes files up to 10 MiB (use shell for it)",
                ) from None
            raise
        data, replacements = edited(decoded(raw, name), args)
        await files.write_atomically(name, data)
    return EditResult(
        file_path=name, created=False, replacements=replacements, bytes_written=len(data)
    )


def load(call: ToolCall, name: str) -> str:
    """The file's text, after the errors SPEC §5.1 names; opened once, race-free."""
    try:
        fd, _ = fs.open_file(call, name, os.O_RDONLY)
    except ToolError as exc:
        if exc.kind != "not_found":
            raise
        raise ToolError(
            "not_found",
            f"{name} does not exist; to create it, set create_if_missing with an empty old_text",
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "a directory, not a file" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ToolError("invalid_arguments", f"{name} is {what}")
    with os.fdopen(fd, "rb") as source:
        if info.st_size > MAX_FILE_BYTES:
            raise ToolError(
                "too_large",
                f"{name} is {info.st_size / MIB:.1f} MiB; edit takes files up to 10 MiB"
                " (use shell for it)",
            )
        data = source.read(MAX_FILE_BYTES + 1)
    return decoded(data, name)


def store(call: ToolCall, name: str, data: bytes) -> None:
    try:
        fs.write_atomically(call, name, data)
    except OSError as exc:
        raise ToolError("failed", f"could not write {name}: {exc.strerror or exc}") from None


def match_lines(text: str, old: str) -> list[int]:
    """The 1-based line of each non-overlapping match of `old`, as `str.replace` finds them."""
    starts: list[int] = []
    line, scanned = 1, 0
    position = text.find(old)
    while position != -1:
        line += text.count("\n", scanned, position)
        scanned = position
        starts.append(line)
        position = text.find(old, position + len(old))
    return starts


def several_message(starts: list[int]) -> str:
    listed = ", ".join(str(line) for line in starts[:MAX_LISTED_LINES])
    if len(starts) > MAX_LISTED_LINES:
        listed += ", …"
    return (
        f"old_text matches {len(starts)} places (lines {listed});"
        " include more surrounding lines or set replace_all"
    )


def not_found_message(text: str, old: str, name: str) -> str:
    message = f"old_text not found in {name}"
    line = indentation_match(text, old)
    if line is not None:
        message += f" (a match ignoring indentation exists at line {line})"
    return message


def indentation_match(text: str, old: str) -> int | None:
    """The first line where `old`'s lines match with leading whitespace stripped on both sides."""
    wanted = [line.lstrip() for line in old.removesuffix("\n").split("\n")]
    if not any(wanted):  # blank lines alone would match anywhere
        return None
    lines = [line.lstrip() for line in text.split("\n")]
    for start in range(len(lines) - len(wanted) + 1):
        if lines[start] == wanted[0] and lines[start : start + len(wanted)] == wanted:
            return start + 1
    return None
