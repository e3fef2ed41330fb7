"""`apply_patch` (SPEC §5.1): add, update, move and delete workspace files from one patch.

The whole patch is planned in memory first: every file is read, every hunk placed, every target
checked, and only then is anything written, so a hunk that does not apply leaves the workspace as
it was. Later changes in a patch see earlier ones (add a file, then update it). Files are read and
written through `patch_files`: locally through `services.tools.fs`, whose walk keeps every path,
symlinks followed, in the workspace; on the call's SSH remote over SFTP, one session per patch.
Patch paths are workspace-relative on either side.
"""

import math
import posixpath
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.tools import fs
from services.tools.builtin.edit import ENCODING, LOSSLESS
from services.tools.builtin.file_write import MIB
from services.tools.builtin.patch_apply import TextFile, apply_hunks, decode, encode
from services.tools.builtin.patch_files import PatchFiles
from services.tools.builtin.patch_parse import FileChange, parse
from services.tools.results import Result, ToolError
from services.tools.workspace import ToolCall, remote_for

MAX_PATCH_BYTES = MIB
MAX_FILES = 100
PatchAction = Literal["add", "update", "delete", "move"]
Staged = dict[str, bytes | None]  # path → its new bytes, or None once deleted


class ApplyPatchArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Apply a patch to files of the workspace; nothing is written unless every hunk applies.
    Envelope format: `*** Begin Patch`, then per file `*** Add File: <path>` with `+` lines,
    `*** Delete File: <path>`, or `*** Update File: <path>` (optionally `*** Move to: <path>`)
    with hunks, each introduced by `@@` or `@@ <a line just above the change>` and holding lines
    that start with a space (context), `-` (removed) or `+` (added), optionally ended by
    `*** End of File`; last `*** End Patch`. Unified diffs (`--- a/x`, `+++ b/x`, `@@ -a,b +c,d
    @@`, `/dev/null` for added or deleted files) work too. Give about 3 context lines around each
    change; hunks of a file go top to bottom. A hunk matches exactly, else ignoring trailing, then
    surrounding whitespace. CRLF files keep CRLF. Paths are relative to the workspace. At most
    1 MiB and 100 files per call."""

    patch: Annotated[
        str, Meta(min_length=1, description="the patch text: envelope format or a unified diff")
    ]
    strip: Annotated[
        Annotated[int, Meta(ge=0, le=100)] | None,
        Meta(
            description="unified diffs: leading path parts to drop (default: 1 when the paths"
            " start with a/ and b/, else 0)"
        ),
    ] = None
    check: Annotated[bool, Meta(description="check that the patch applies; write nothing")] = False


class PatchedFile(Result, frozen=True, kw_only=True):
    path: str
    action: PatchAction
    to: str | None = None  # a move's new path
    hunks: int


class ApplyPatchResult(Result, frozen=True, kw_only=True):
    applied: bool  # the files were written (false with check)
    check_only: bool
    files: list[PatchedFile]


async def apply_patch(args: ApplyPatchArgs, call: ToolCall) -> ApplyPatchResult:
    try:
        size = len(args.patch.encode(ENCODING, errors=LOSSLESS))
    except UnicodeEncodeError as exc:
        unpaired = ord(exc.object[exc.start])
        message = f"the patch holds the unpaired surrogate U+{unpaired:04X}; send UTF-8 text"
        raise ToolError("invalid_arguments", message) from None
    if size > MAX_PATCH_BYTES:
        shown = math.ceil(size * 10 / MIB) / 10  # rounded up: 1 MiB + 1 byte is not "1.0"
        raise ToolError("too_large", f"the patch is {shown:.1f} MiB; send at most 1 MiB per call")
    changes = [_confined(change) for change in parse(args.patch, args.strip)]
    if len(changes) > MAX_FILES:
        raise ToolError(
            "too_large",
            f"the patch changes {len(changes)} files; change at most {MAX_FILES} per call",
        )
    target = next(filter(None, (remote_for(call, path) for path in _paths(changes))), None)
    if target is None:
        await _apply(PatchFiles(call), changes, is_check=args.check)
    else:
        from services.tools.remote import on_remote  # asyncssh: remote calls only

        async with on_remote.files(call, target) as remote:
            await _apply(PatchFiles(call, remote), changes, is_check=args.check)
    return ApplyPatchResult(
        applied=not args.check, check_only=args.check, files=[_summary(c) for c in changes]
    )


async def _apply(files: PatchFiles, changes: list[FileChange], *, is_check: bool) -> None:
    """Plan the whole patch in memory, then write it unless only checking."""
    staged = await plan(files, changes)
    if not is_check:
        await write(files, staged)


def _paths(changes: list[FileChange]) -> list[str]:
    return [path for change in changes for path in (change.path, change.to) if path is not None]


def workspace_path(path: str) -> str:
    """`path` normalized, if it names a file below the workspace root without leaving it."""
    fs.check_syntax(path)
    if path.startswith("/"):
        raise ToolError(
            "invalid_arguments", f"patch paths are relative to the workspace, not absolute: {path}"
        )
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise ToolError("outside_workspace", f"path is outside the workspace: {path}")
    if normal == ".":
        raise ToolError("invalid_arguments", f"the patch path {path!r} names no file")
    return normal


def _confined(change: FileChange) -> FileChange:
    to = None if change.to is None else workspace_path(change.to)
    return msgspec.structs.replace(change, path=workspace_path(change.path), to=to)


def _summary(change: FileChange) -> PatchedFile:
    is_move = change.to is not None
    return PatchedFile(
        path=change.path,
        action="move" if is_move else change.action,
        to=change.to,
        hunks=0 if change.action == "add" and not change.hunks[0].lines else len(change.hunks),
    )


async def plan(files: PatchFiles, changes: list[FileChange]) -> Staged:
    """Every file's new bytes (None: deleted), in the order the patch touched them."""
    staged: Staged = {}
    for change in changes:
        match change.action:
            case "add":
                await _claim(files, staged, change.path, "add")
                added = apply_hunks(TextFile(lines=[]), change.hunks, change.path)
                staged[change.path] = encode(added)
            case "update":
                await _plan_update(files, staged, change)
            case "delete":
                current = await _current(files, staged, change.path, "delete")
                apply_hunks(decode(current, change.path), change.hunks, change.path)
                staged[change.path] = None
    return staged


async def _plan_update(files: PatchFiles, staged: Staged, change: FileChange) -> None:
    current = await _current(files, staged, change.path, "update")
    patched = encode(apply_hunks(decode(current, change.path), change.hunks, change.path))
    if change.to is None or change.to == change.path:
        staged[change.path] = patched
        return
    await _claim(files, staged, change.to, "move")
    staged[change.path] = None
    staged[change.to] = patched


async def _current(files: PatchFiles, staged: Staged, path: str, action: str) -> bytes:
    """The bytes `path` holds at this point of the patch, or `<action>: <path> not found`."""
    data = staged.get(path)
    if path not in staged:
        kind = await files.kind(path)
        if kind == "directory":
            raise ToolError("invalid_arguments", f"{action}: {path} is a directory, not a file")
        data = None if kind == "missing" else await files.read(path)
    if data is None:
        raise ToolError("not_found", f"{action}: {path} not found")
    return data


async def _claim(files: PatchFiles, staged: Staged, path: str, action: str) -> None:
    """Refuse a new file's path that holds something, or whose parent is a file."""
    is_taken = staged[path] is not None if path in staged else await files.kind(path) != "missing"
    if is_taken:
        raise ToolError("exists", f"{action}: {path} already exists")
    parts = path.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        if parent in staged:
            is_file = staged[parent] is not None
        else:
            kind = await files.kind(parent)
            if kind == "missing":
                return
            is_file = kind == "file"
        if is_file:
            raise ToolError("exists", f"{action}: cannot create {path}: {parent} is a file")


async def write(files: PatchFiles, staged: Staged) -> None:
    """Write the new files first, then delete, so a move never loses its file."""
    for path, data in staged.items():
        if data is not None:
            await files.write(path, data)
    for path, data in staged.items():
        if data is None:
            try:
                await files.remove(path)
            except ToolError as exc:
                if exc.kind != "not_found":  # added and deleted within the patch
                    raise
