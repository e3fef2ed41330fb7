"""Walking a workspace tree for `grep` and `glob` (SPEC §5.1), and the glob syntax they share.

Below the starting path the walk skips the directories in SKIPPED_DIRS (the starting path itself is
never skipped, so a search that starts inside one of them works). It never follows a directory
symlink, and a file symlink counts only when its target passes the path rule (`fs`). Only
regular files are found. The walk runs in a thread that stops when the call is cancelled.
"""

import asyncio
import os
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from services.tools import fs
from services.tools.results import ToolError
from services.tools.workspace import ToolCall

SKIPPED_DIRS = frozenset(
    {".git", "node_modules", "__pycache__", ".venv", "venv", ".stellaclaw", ".skill"}
)

T = TypeVar("T")


class Found(msgspec.Struct, frozen=True, kw_only=True):
    """A regular file under the starting path."""

    path: Path  # the starting path joined with `relative`: a link keeps its own name
    relative: str  # relative to the starting path, `/`-separated; a file start is its own name
    mtime_ns: int
    size: int


async def in_thread(work: Callable[[threading.Event], T]) -> T:
    """Run blocking `work` in a thread; the event it gets is set once nobody waits for it."""
    halt = threading.Event()
    try:
        return await asyncio.to_thread(work, halt)
    finally:
        halt.set()


def target_stat(call: ToolCall, link: Path) -> os.stat_result | None:
    """The stat of what the link `link` points to, if that passes the path rule of SPEC §5.0
    (walked race-free); None for a link out of the rule or a broken one."""
    try:
        with fs.located(call, str(link), is_write=False) as end:
            return end.stat() if end.is_present else None
    except (ToolError, OSError):
        return None


def files_under(
    call: ToolCall,
    start: Path,
    halt: threading.Event,
    skipped: frozenset[str] = SKIPPED_DIRS,
) -> list[Found]:
    """Every regular file at or under `start`, in no particular order."""
    if not start.is_dir():
        info = target_stat(call, start)
        is_file = info is not None and stat.S_ISREG(info.st_mode)
        return [_found(start, start.name, info)] if info is not None and is_file else []
    found: list[Found] = []
    pending = [(start, "")]
    while pending and not halt.is_set():
        folder, prefix = pending.pop()
        for name, is_dir, info in _scan(call, folder):
            relative = prefix + name
            if is_dir:
                if name not in skipped:
                    pending.append((folder / name, relative + "/"))
            elif info is not None and stat.S_ISREG(info.st_mode):
                found.append(_found(folder / name, relative, info))
    return found


def _scan(call: ToolCall, folder: Path) -> list[tuple[str, bool, os.stat_result | None]]:
    """Each entry of `folder` (opened race-free): its name, whether it is a directory (not a
    link to one), and the stat of what it is (a link's target, if the rule allows it)."""
    try:
        fd = fs.open_dir(call, str(folder))
    except (ToolError, OSError):  # gone meanwhile, or a link out of the rule
        return []
    seen: list[tuple[str, bool, os.stat_result | None]] = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    seen.append((entry.name, True, None))
                elif entry.is_symlink():
                    seen.append((entry.name, False, target_stat(call, folder / entry.name)))
                else:
                    seen.append((entry.name, False, entry.stat(follow_symlinks=False)))
    except OSError:  # unreadable: nothing to find there
        return seen
    finally:
        os.close(fd)
    return seen


def _found(path: Path, relative: str, info: os.stat_result) -> Found:
    return Found(path=path, relative=relative, mtime_ns=info.st_mtime_ns, size=info.st_size)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` as a regex on a whole `/`-separated relative path: `*` and `?` stay within one
    part, `**` spans parts (`**/` also matches none), `[abc]`, `[!abc]` and `{a,b}` as in shells.
    Raises `re.error` for a pattern that makes no regex (an unclosed `{`, a bad range)."""
    pieces: list[str] = []
    index = nesting = 0
    while index < len(pattern):
        piece, index, nesting = _token(pattern, index, nesting)
        pieces.append(piece)
    if nesting:
        raise re.error("unclosed '{'")
    return re.compile("".join(pieces) + r"\Z", re.DOTALL)


def _token(pattern: str, index: int, nesting: int) -> tuple[str, int, int]:
    """The regex for the glob token at `index`, the index after it, and the `{` nesting after it."""
    char = pattern[index]
    if pattern.startswith("**/", index):
        return "(?:.*/)?", index + 3, nesting
    if pattern.startswith("**", index):
        return ".*", index + 2, nesting
    if char == "*":
        return "[^/]*", index + 1, nesting
    if char == "?":
        return "[^/]", index + 1, nesting
    if char == "[":
        piece, after = _bracket(pattern, index)
        return piece, after, nesting
    if char == "{":
        return "(?:", index + 1, nesting + 1
    if char == "}" and nesting:
        return ")", index + 1, nesting - 1
    if char == "," and nesting:
        return "|", index + 1, nesting
    return re.escape(char), index + 1, nesting


def _bracket(pattern: str, index: int) -> tuple[str, int]:
    """A `[...]` class (a `]` right after `[` or `[!` is a member); a lone `[` is literal."""
    inner = index + 1
    if pattern.startswith("!", inner):
        inner += 1
    close = pattern.find("]", inner + 1 if pattern.startswith("]", inner) else inner)
    if close < 0:
        return re.escape("["), index + 1
    members = pattern[inner:close].replace("\\", "\\\\").replace("[", "\\[").replace("^", "\\^")
    negate = "^" if pattern[index + 1] == "!" else ""
    return f"[{negate}{members}]", close + 1
