"""Walking a workspace tree for `grep` and `glob` (SPEC §5.1), and the glob syntax they share.

Below the starting path the walk skips the directories in SKIPPED_DIRS (the starting path itself is
never skipped, so a search that starts inside one of them works). It never follows a directory
symlink, and a file symlink counts only when its target passes the path rule (`confine`). Only
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

from services.tools.results import ToolError
from services.tools.workspace import ToolCall, confine

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


def is_allowed(call: ToolCall, target: Path) -> bool:
    """Whether `target` (a link's path, followed) passes the path rule of SPEC §5.0."""
    try:
        confine(call, str(target), is_read=True)
    except ToolError:
        return False
    return True


def files_under(
    call: ToolCall,
    start: Path,
    halt: threading.Event,
    skipped: frozenset[str] = SKIPPED_DIRS,
) -> list[Found]:
    """Every regular file at or under `start`, in no particular order."""
    if not start.is_dir():
        info = _regular(start)
        return [] if info is None else [_found(start, start.name, info)]
    found: list[Found] = []
    pending = [(start, "")]
    while pending and not halt.is_set():
        folder, prefix = pending.pop()
        for entry in _scan(folder):
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in skipped:
                    pending.append((Path(entry.path), relative + "/"))
                continue
            info = _entry_file(call, entry)
            if info is not None:
                found.append(_found(Path(entry.path), relative, info))
    return found


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:  # unreadable or gone meanwhile: nothing to find there
        return []


def _entry_file(call: ToolCall, entry: os.DirEntry[str]) -> os.stat_result | None:
    """The stat of a regular file entry, a link followed only when its target is allowed."""
    if entry.is_symlink() and not is_allowed(call, Path(entry.path)):
        return None
    return _regular(Path(entry.path))


def _regular(path: Path) -> os.stat_result | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


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
