"""`ls` (SPEC §5.1): a directory as an indented tree, filled breadth first up to 1,000 entries.

Breadth first means a truncated listing still shows every upper level it reached; the tree is
printed depth first, each directory's entries sorted by name ignoring case. A directory symlink is
shown (`name/ (symlink)`) but never entered; a symlink whose target breaks the path rule, and
anything that is neither a directory nor a regular file, is left out. A file path lists that file.
"""

import asyncio
import os
import stat
import threading
from collections import deque
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from services.tools import fs
from services.tools.builtin.walking import in_thread, target_stat
from services.tools.results import Result, ToolError
from services.tools.spill import capped
from services.tools.workspace import ToolCall, relative, remote_for

MAX_ENTRIES = 1000
SKIPPED_NAMES = frozenset(
    {"__pycache__", "node_modules", "target", "dist", "build", "coverage", "venv"}
)
MORE = "… more entries; list a subdirectory"
UNITS = ("KiB", "MiB", "GiB", "TiB")


class LsArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """List a directory as a tree: one line per entry, two spaces of indent per level,
    directories end in `/`, files show their size (`512 B`, `1.2 KiB`, `3.4 MiB`). Skips dot
    names and __pycache__, node_modules, target, dist, build, coverage, venv; stops at 1,000
    entries. A file path lists just that file."""

    path: Annotated[
        str, Meta(min_length=1, description="the directory to list (default the workspace)")
    ] = "."
    depth: Annotated[int, Meta(ge=1, le=10, description="levels to descend (default 3)")] = 3


class LsResult(Result, frozen=True, kw_only=True):
    path: str
    entries: int  # the entries listed
    truncated: bool  # more entries exist within depth
    tree: str


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    path: Path
    is_dir: bool
    is_link: bool
    size: int


Children = dict[Path, list[Entry]]


async def ls(args: LsArgs, call: ToolCall) -> LsResult:
    target = remote_for(call, args.path)
    if target is not None:  # the remote walk script answers as this function does
        from services.tools.remote import on_remote  # asyncssh: remote calls only

        found = msgspec.convert(await on_remote.walk(call, target, "ls", args), LsResult)
        return msgspec.structs.replace(found, tree=await capped(found.tree, call))
    start = await asyncio.to_thread(fs.existing, call, args.path)
    shown = relative(call, start)
    if not start.is_dir():
        line = f"{start.name} ({human_size(start.stat().st_size)})"
        return LsResult(path=shown, entries=1, truncated=False, tree=line)

    def survey_tree(halt: threading.Event) -> tuple[Children, int, bool]:
        return survey(call, start, args.depth, halt)

    children, count, truncated = await in_thread(survey_tree)
    lines: list[str] = []
    render(children, start, 0, lines)
    if truncated:
        lines.append(MORE)
    return LsResult(
        path=shown,
        entries=count,
        truncated=truncated,
        tree=await capped("\n".join(lines), call),
    )


def survey(
    call: ToolCall, start: Path, depth: int, halt: threading.Event
) -> tuple[Children, int, bool]:
    """Each listed directory's entries, breadth first; the entry count; whether more exist."""
    children: Children = {}
    count = 0
    pending = deque([(start, 1)])
    while pending and not halt.is_set():
        folder, level = pending.popleft()
        for entry in entries_of(call, folder):
            if count == MAX_ENTRIES:
                return children, count, True
            children.setdefault(folder, []).append(entry)
            count += 1
            if entry.is_dir and not entry.is_link and level < depth:
                pending.append((entry.path, level + 1))
    return children, count, False


def entries_of(call: ToolCall, folder: Path) -> list[Entry]:
    """The entries of `folder` that `ls` shows, sorted by name ignoring case; the folder is
    opened race-free, so a link swapped in for it is followed only inside the rule."""
    try:
        fd = fs.open_dir(call, str(folder))
    except ToolError:  # gone meanwhile, or a link out of the rule: shown as empty
        return []
    try:
        with os.scandir(fd) as scan:
            found = [_entry(call, folder, item) for item in scan if _is_shown(item)]
    except OSError:  # unreadable: shown as empty
        return []
    finally:
        os.close(fd)
    kept = [entry for entry in found if entry is not None]
    return sorted(kept, key=lambda entry: (entry.path.name.casefold(), entry.path.name))


def _is_shown(item: os.DirEntry[str]) -> bool:
    if item.name.startswith("."):
        return False
    return not (item.name in SKIPPED_NAMES and item.is_dir(follow_symlinks=False))


def _entry(call: ToolCall, folder: Path, item: os.DirEntry[str]) -> Entry | None:
    path = folder / item.name
    is_link = item.is_symlink()
    info = target_stat(call, path) if is_link else _own_stat(item)
    if info is None:  # a broken link, or one out of the rule
        return None
    if stat.S_ISDIR(info.st_mode):
        return Entry(path=path, is_dir=True, is_link=is_link, size=0)
    if stat.S_ISREG(info.st_mode):
        return Entry(path=path, is_dir=False, is_link=is_link, size=info.st_size)
    return None


def _own_stat(item: os.DirEntry[str]) -> os.stat_result | None:
    try:
        return item.stat(follow_symlinks=False)
    except OSError:
        return None


def render(children: Children, folder: Path, level: int, lines: list[str]) -> None:
    """Append `folder`'s listed entries to `lines`, each followed by its own."""
    for entry in children.get(folder, []):
        lines.append("  " * level + label(entry))
        if entry.is_dir:
            render(children, entry.path, level + 1, lines)


def label(entry: Entry) -> str:
    name = entry.path.name
    if not entry.is_dir:
        return f"{name} ({human_size(entry.size)})"
    return f"{name}/ (symlink)" if entry.is_link else f"{name}/"


def human_size(size: int) -> str:
    """`512 B` below 1 KiB, else one decimal in the largest unit under 1,024: `1.2 KiB`."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    unit = 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f} {UNITS[unit]}"
