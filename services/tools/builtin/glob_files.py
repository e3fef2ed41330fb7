"""`glob` (SPEC §5.1): the files whose path relative to `path` matches a glob, newest first."""

import asyncio
import re
import threading
from typing import Annotated

import msgspec
from msgspec import Meta

from services.tools import fs
from services.tools.builtin.walking import SKIPPED_DIRS, files_under, glob_regex, in_thread
from services.tools.results import Result, ToolError
from services.tools.workspace import ToolCall, relative, remote_for

MAX_FILES = 100


class GlobArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Find files by a glob on their path relative to path: `*` and `?` stay within one directory
    level, `**` spans levels (`**/*.md` is every Markdown file, `*.md` only those directly in
    path), `[abc]` and `{ts,tsx}` as in shells. Lists up to 100 files, newest first. Skips .git,
    node_modules, __pycache__, .venv, venv, .stellaclaw, .skill unless the pattern names them."""

    pattern: Annotated[str, Meta(min_length=1, description="the glob, e.g. `src/**/*.py`")]
    path: Annotated[
        str, Meta(min_length=1, description="the directory to search (default the workspace)")
    ] = "."


class GlobResult(Result, frozen=True, kw_only=True):
    pattern: str
    num_files: int  # the files listed
    filenames: list[str]
    truncated: bool  # more files matched


async def glob(args: GlobArgs, call: ToolCall) -> GlobResult:
    regex = _compile(args.pattern)
    target = remote_for(call, args.path)
    if target is not None:  # the remote walk script answers as this function does
        from services.tools.remote import on_remote  # asyncssh: remote calls only

        return msgspec.convert(await on_remote.walk(call, target, "glob", args), GlobResult)
    start = await asyncio.to_thread(fs.existing, call, args.path)
    if not start.is_dir():
        raise ToolError("invalid_arguments", f"{args.path} is a file; glob searches a directory")
    skipped = SKIPPED_DIRS - set(args.pattern.split("/"))  # a pattern naming one enters it

    def search(halt: threading.Event) -> list[str]:
        found = files_under(call, start, halt, skipped)
        matched = [item for item in found if regex.match(item.relative)]
        ordered = sorted(matched, key=lambda item: (-item.mtime_ns, relative(call, item.path)))
        return [relative(call, item.path) for item in ordered[: MAX_FILES + 1]]

    names = await in_thread(search)
    return GlobResult(
        pattern=args.pattern,
        num_files=min(len(names), MAX_FILES),
        filenames=names[:MAX_FILES],
        truncated=len(names) > MAX_FILES,
    )


def _compile(pattern: str) -> re.Pattern[str]:
    if pattern.startswith("/"):
        raise ToolError(
            "invalid_arguments",
            f"pattern {pattern!r} is absolute; put the directory in path and a relative pattern",
        )
    try:
        return glob_regex(pattern)
    except re.error as exc:
        raise ToolError("invalid_arguments", f"invalid glob {pattern!r}: {exc}") from None
