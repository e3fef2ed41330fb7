"""`grep` (SPEC §5.1): the files, or the lines, whose text matches a Python regex.

Files are searched newest first (then by path), line by line, so both outputs keep that order and
the search stops once the cap is passed. Binary files (a NUL in the first 8 KiB) and files over
5 MiB are skipped, and so are the directories of `walking.SKIPPED_DIRS`.
"""

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from services.tools import fs
from services.tools.builtin.walking import Found, files_under, glob_regex, in_thread
from services.tools.results import Result, ToolError
from services.tools.workspace import ToolCall, relative, remote_for

MAX_FILES = 100
MAX_MATCHES = 200
MAX_MATCH_CHARS = 500
MAX_FILE_BYTES = 5 * 1024 * 1024
BINARY_PROBE_BYTES = 8192
CONTEXT_CHARS = 100  # kept before a match that lies beyond the first 500 chars of its line


class GrepArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Search file contents with a Python regex, line by line. output "files" lists matching
    files (up to 100, newest first); "lines" lists matches as `<path>:<line>: <text>` (up to 200).
    Skips binary files, files over 5 MiB and .git, node_modules, __pycache__, .venv, venv,
    .stellaclaw, .skill unless path is inside one."""

    pattern: Annotated[str, Meta(min_length=1, description="a Python `re` regex")]
    path: Annotated[
        str, Meta(min_length=1, description="file or directory to search (default the workspace)")
    ] = "."
    include: (
        Annotated[
            str,
            Meta(
                min_length=1,
                description="only files matching this glob: `*.py` matches the file name at any "
                "depth; a glob with `/` (`src/**/*.ts`) matches the path relative to path",
            ),
        ]
        | UnsetType
    ) = UNSET
    case_insensitive: Annotated[bool, Meta(description="ignore case")] = False
    output: Annotated[
        Literal["files", "lines"],
        Meta(description='"files": the matching files; "lines": the matching lines'),
    ] = "files"


class GrepFilesResult(Result, frozen=True, kw_only=True):
    pattern: str
    num_files: int  # the files listed
    filenames: list[str]
    truncated: bool  # more files matched


class GrepLinesResult(Result, frozen=True, kw_only=True):
    pattern: str
    num_matches: int  # the lines listed
    matches: list[str]  # `<path>:<line>: <text>`, each at most 500 chars
    truncated: bool  # more lines matched


async def grep(args: GrepArgs, call: ToolCall) -> GrepFilesResult | GrepLinesResult:
    regex = _compile(args)
    include = _include(args.include)
    target = remote_for(call, args.path)
    if target is not None:  # the remote walk script answers as this function does
        from services.tools.remote import on_remote  # asyncssh: remote calls only

        found = await on_remote.walk(call, target, "grep", args)
        if args.output == "files":
            return msgspec.convert(found, GrepFilesResult)
        return msgspec.convert(found, GrepLinesResult)
    start = await asyncio.to_thread(fs.existing, call, args.path)

    def search(halt: threading.Event) -> GrepFilesResult | GrepLinesResult:
        found = [item for item in files_under(call, start, halt) if _wanted(item, include)]
        ordered = sorted(((relative(call, item.path), item) for item in found), key=_newest)
        if args.output == "files":
            return _files(call, args.pattern, ordered, regex, halt)
        return _lines(call, args.pattern, ordered, regex, halt)

    return await in_thread(search)


def _compile(args: GrepArgs) -> re.Pattern[str]:
    try:
        return re.compile(args.pattern, re.IGNORECASE if args.case_insensitive else 0)
    except re.error as exc:
        raise ToolError("invalid_arguments", f"invalid regex {args.pattern!r}: {exc}") from None


def _include(include: str | UnsetType) -> re.Pattern[str] | None:
    if isinstance(include, UnsetType):
        return None
    try:  # a glob without `/` matches the name at any depth
        return glob_regex(include if "/" in include else "**/" + include)
    except re.error as exc:
        raise ToolError("invalid_arguments", f"invalid include glob {include!r}: {exc}") from None


def _wanted(item: Found, include: re.Pattern[str] | None) -> bool:
    """Not too big, and matching `include` (if any) on the path relative to the start."""
    if item.size > MAX_FILE_BYTES:
        return False
    return include is None or include.match(item.relative) is not None


def _newest(pair: tuple[str, Found]) -> tuple[int, str]:
    shown, item = pair
    return -item.mtime_ns, shown


def _files(
    call: ToolCall,
    pattern: str,
    ordered: list[tuple[str, Found]],
    regex: re.Pattern[str],
    halt: threading.Event,
) -> GrepFilesResult:
    names: list[str] = []
    for shown, item in ordered:
        if halt.is_set():
            break
        if next(_matches(call, item.path, regex), None) is not None:
            names.append(shown)
            if len(names) > MAX_FILES:
                break
    shown_names = names[:MAX_FILES]
    return GrepFilesResult(
        pattern=pattern,
        num_files=len(shown_names),
        filenames=shown_names,
        truncated=len(names) > MAX_FILES,
    )


def _lines(
    call: ToolCall,
    pattern: str,
    ordered: list[tuple[str, Found]],
    regex: re.Pattern[str],
    halt: threading.Event,
) -> GrepLinesResult:
    matches: list[str] = []
    for shown, item in ordered:
        if halt.is_set() or len(matches) > MAX_MATCHES:
            break
        for number, text, column in _matches(call, item.path, regex):
            matches.append(excerpt(f"{shown}:{number}: ", text, column))
            if len(matches) > MAX_MATCHES:
                break
    listed = matches[:MAX_MATCHES]
    return GrepLinesResult(
        pattern=pattern,
        num_matches=len(listed),
        matches=listed,
        truncated=len(matches) > MAX_MATCHES,
    )


def _matches(call: ToolCall, path: Path, regex: re.Pattern[str]) -> Iterator[tuple[int, str, int]]:
    """Each matching line as (1-based number, text, where the match starts), read lazily."""
    text = _text(call, path)
    if text is None:
        return
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no line
    for number, line in enumerate(lines, start=1):
        stripped = line.removesuffix("\r")
        hit = regex.search(stripped)
        if hit is not None:
            yield number, stripped, hit.start()


def _text(call: ToolCall, path: Path) -> str | None:
    """The file as text (invalid bytes as U+FFFD), or None when it is binary or unreadable;
    read race-free (a link swapped in since the walk is followed only inside the rule)."""
    try:
        raw = fs.read_bytes(call, str(path), MAX_FILE_BYTES)
    except (OSError, ToolError):
        return None
    if b"\0" in raw[:BINARY_PROBE_BYTES]:
        return None
    return raw.decode("utf-8", errors="replace")


def excerpt(prefix: str, text: str, column: int) -> str:
    """`<prefix><text>` in at most 500 chars; a cut line keeps the match start in view."""
    room = MAX_MATCH_CHARS - len(prefix)
    if len(text) > room:
        if column + CONTEXT_CHARS < room:
            text = text[: room - 1] + "…"
        else:
            begin = column - CONTEXT_CHARS
            rest = text[begin:]
            text = "…" + (rest if len(rest) <= room - 1 else rest[: room - 2] + "…")
    line = prefix + text
    return line if len(line) <= MAX_MATCH_CHARS else line[: MAX_MATCH_CHARS - 1] + "…"
