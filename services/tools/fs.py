"""The workspace boundary, enforced race-free (SPEC §5.0): every path a tool touches is walked one
component at a time from an open directory fd, never checked by name and opened later.

Python has no `openat2(RESOLVE_IN_ROOT)`, so the walk does its work: each component is looked at
with `fstatat(AT_SYMLINK_NOFOLLOW)` relative to the directory fd above it, directories are opened
with `O_NOFOLLOW`, and a symlink is read and its target walked the same way (an absolute target must
lie in an anchor: the workspace, the shared dir, or, for reading, the software dir; a `..` never
climbs above an anchor). The last component is opened by the caller with `O_NOFOLLOW` against the
directory fd it was found in, so a symlink planted between the walk and the open fails the open
(ELOOP) and the walk runs again. In `disabled` sandbox mode the file system root is the one anchor.

Every function here blocks: tools call them in a thread (`asyncio.to_thread`).
"""

import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import msgspec

from services.tools.results import ToolError
from services.tools.workspace import MAX_NAME_BYTES, MAX_PATH_BYTES, ToolCall

MAX_LINKS = 40  # what the kernel follows before ELOOP
RETRIES = 3  # walks again after a component changed under the walk
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Located(msgspec.Struct, kw_only=True):
    """Where a path ends: the last component's name in an open directory (closed on exit)."""

    dir_fd: int
    name: str  # "" when the path names an anchor itself (the workspace root)
    shown: str  # the path as the model gave it, for messages
    is_present: bool  # the name existed (not a symlink: those were followed) during the walk

    @property
    def path(self) -> Path:
        """The absolute path on this host (for messages and for a command's cwd)."""
        directory = Path(os.readlink(f"/proc/self/fd/{self.dir_fd}"))
        return directory / self.name if self.name else directory

    def stat(self) -> os.stat_result:
        if not self.name:
            return os.stat(self.dir_fd)
        return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)


def check_syntax(path: str) -> None:
    """A path no file system takes (a NUL byte, over PATH_MAX or NAME_MAX) is a bad argument."""
    if "\0" in path:
        raise ToolError("invalid_arguments", "the path contains a NUL byte")
    if len(path.encode(errors="surrogateescape")) > MAX_PATH_BYTES:
        raise ToolError("invalid_arguments", f"the path is longer than {MAX_PATH_BYTES:,} bytes")
    if any(len(part.encode(errors="surrogateescape")) > MAX_NAME_BYTES for part in path.split("/")):
        raise ToolError("invalid_arguments", f"a name in the path is over {MAX_NAME_BYTES} bytes")


@contextlib.contextmanager
def located(
    call: ToolCall,
    path: str,
    *,
    is_write: bool,
    make_parents: bool = False,
    follow_last: bool = True,
) -> Iterator[Located]:
    """Walk `path` to its last component; missing parents are created with `make_parents`, else
    they are `not_found`. With `follow_last`, a symlink at the end is followed too."""
    check_syntax(path)
    walk = _Walk(call, path, is_write=is_write)
    try:
        yield walk.run(make_parents=make_parents, follow_last=follow_last)
    finally:
        walk.close()


def existing(call: ToolCall, path: str) -> Path:
    """The real path of what `path` names (walked race-free), or `not_found`."""
    with located(call, path, is_write=False) as end:
        if not end.is_present:
            raise ToolError("not_found", f"{path} does not exist")
        return end.path


def open_file(call: ToolCall, path: str, flags: int, *, mode: int = 0o666) -> tuple[int, Located]:
    """An fd of the file `path` names, opened with `flags` (+ O_NOFOLLOW): writing flags create
    missing parents. The caller closes the fd; the Located is already closed (use its `shown`)."""
    is_write = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
    if not is_write:  # a FIFO opens at once (to be refused as no regular file), never blocks
        flags |= os.O_NONBLOCK
    for attempt in range(RETRIES):
        with located(call, path, is_write=is_write, make_parents=bool(flags & os.O_CREAT)) as end:
            if not end.name:
                raise ToolError("invalid_arguments", f"{path} is a directory")
            if not end.is_present and not flags & os.O_CREAT:
                raise ToolError("not_found", f"{path} does not exist")
            try:
                fd = os.open(
                    end.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=end.dir_fd
                )
            except OSError as exc:
                if exc.errno == errno.ELOOP and attempt < RETRIES - 1:
                    continue  # a symlink appeared after the walk: walk it again
                raise _as_tool_error(exc, path) from None
            return fd, end
    raise ToolError("failed", f"{path} kept changing while it was opened")  # pragma: no cover


def open_dir(call: ToolCall, path: str, *, is_write: bool = False) -> int:
    """A readable fd of the directory `path` names (for `os.scandir`, `os.fwalk`); caller closes."""
    for attempt in range(RETRIES):
        with located(call, path, is_write=is_write) as end:
            if not end.is_present and end.name:
                raise ToolError("not_found", f"{path} does not exist")
            try:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                return os.open(end.name or ".", flags, dir_fd=end.dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP and attempt < RETRIES - 1:
                    continue
                if exc.errno == errno.ENOTDIR:
                    raise ToolError("invalid_arguments", f"{path} is not a directory") from None
                raise _as_tool_error(exc, path) from None
    raise ToolError("failed", f"{path} kept changing while it was opened")  # pragma: no cover


def read_bytes(call: ToolCall, path: str, limit: int) -> bytes:
    """The file's bytes, up to `limit` (a longer file is `too_large`)."""
    fd, end = open_file(call, path, os.O_RDONLY)
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        what = "is a directory" if stat.S_ISDIR(kind) else "is not a regular file"
        raise ToolError("invalid_arguments", f"{end.shown} {what}")
    with os.fdopen(fd, "rb") as source:
        data = source.read(limit + 1)
    if len(data) > limit:
        raise ToolError("too_large", f"{end.shown} is over {limit:,} bytes")
    return data


def write_atomically(call: ToolCall, path: str, data: bytes) -> bool:
    """Put `data` at `path` through a temp file beside it and a rename (parents created); an
    existing file keeps its mode. Whether the file was created."""
    with located(call, path, is_write=True, make_parents=True) as end:
        if not end.name:
            raise ToolError("exists", f"{path} is a directory; give the path of a file")
        kept = end.stat() if end.is_present else None
        if kept is not None and stat.S_ISDIR(kept.st_mode):
            raise ToolError("exists", f"{path} is a directory; give the path of a file")
        if kept is not None and not stat.S_ISREG(kept.st_mode):
            raise ToolError("failed", f"{path} is not a regular file")
        temp = _temp_beside(end, data, stat.S_IMODE(kept.st_mode) if kept is not None else None)
        try:
            os.replace(temp, end.name, src_dir_fd=end.dir_fd, dst_dir_fd=end.dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=end.dir_fd)
            raise
        return kept is None


def create_new(end: Located, data: bytes) -> bool:
    """Put `data` under the walked name unless something is there already (a link too): a temp
    file beside it, linked into place, so the file appears whole and nothing is replaced.
    Whether it was written."""
    temp = _temp_beside(end, data, None)
    try:
        os.link(temp, end.name, src_dir_fd=end.dir_fd, dst_dir_fd=end.dir_fd)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=end.dir_fd)
    return True


def _temp_beside(end: Located, data: bytes, mode: int | None) -> str:
    """A new temp file beside the walked name holding `data`, synced (`mode` kept, if given);
    its name. A failed write leaves nothing behind."""
    temp = f".{end.name[:200]}.{os.urandom(6).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o666, dir_fd=end.dir_fd)
    try:
        with os.fdopen(fd, "wb") as target:
            target.write(data)
            target.flush()
            os.fsync(fd)
            if mode is not None:
                os.fchmod(fd, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=end.dir_fd)
        raise
    return temp


def holds(end: Located, data: bytes) -> bool:
    """Whether the walked name is a regular file (no link) with exactly these bytes."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(end.name, flags, dir_fd=end.dir_fd)
    except OSError:  # a link (ELOOP), gone, or not ours to read: not the same file
        return False
    with os.fdopen(fd, "rb") as found:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(data):
            return False
        return found.read(len(data) + 1) == data


def remove(call: ToolCall, path: str) -> None:
    """Delete the file `path` names (a symlink itself, not its target)."""
    with located(call, path, is_write=True, follow_last=False) as end:
        if not end.name:
            raise ToolError("invalid_arguments", f"{path} is a directory")
        try:
            os.unlink(end.name, dir_fd=end.dir_fd)
        except OSError as exc:
            raise _as_tool_error(exc, path) from None


def make_dirs(call: ToolCall, path: str) -> None:
    """Create the directory `path` names and its parents (present ones are fine)."""
    with located(call, path, is_write=True, make_parents=True) as end:
        if end.name and not end.is_present:
            with contextlib.suppress(FileExistsError):
                os.mkdir(end.name, dir_fd=end.dir_fd)


def _as_tool_error(exc: OSError, path: str) -> ToolError:
    match exc.errno:
        case errno.ENOENT:
            return ToolError("not_found", f"{path} does not exist")
        case errno.EISDIR:
            return ToolError("invalid_arguments", f"{path} is a directory")
        case errno.EEXIST:
            return ToolError("exists", f"{path} already exists")
        case errno.ELOOP:
            return ToolError("invalid_arguments", f"too many symlinks in the path {path}")
        case errno.ENOTDIR:
            return ToolError("not_found", f"{path}: a part of the path is not a directory")
        case _:
            return ToolError("failed", f"{path}: {exc.strerror or exc}")


class _Walk:
    """One walk of a path from its anchor; holds the directory fds it opened."""

    def __init__(self, call: ToolCall, path: str, *, is_write: bool) -> None:
        self.path = path
        self.is_free = call.mode == "disabled"
        anchors = [call.root, call.shared]
        if not is_write and call.host.software is not None:
            anchors.append(call.host.software.resolve())
        self.anchors = [Path("/")] if self.is_free else anchors
        self.root = call.root
        self.stack: list[int] = []
        self.links = 0

    def close(self) -> None:
        while self.stack:
            os.close(self.stack.pop())

    def run(self, *, make_parents: bool, follow_last: bool) -> Located:
        parts = self._anchor(self.path if self.path.startswith("/") else f"{self.root}/{self.path}")
        while parts:
            part = parts.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                self._up()
                continue
            is_last = all(rest in ("", ".") for rest in parts)
            if is_last and not follow_last:
                return self._end(part, is_present=self._exists(part))
            info = self._look(part, is_last=is_last, make_parents=make_parents)
            if info is None:
                return self._end(part, is_present=False)
            if stat.S_ISLNK(info.st_mode):
                parts.extendleft(reversed(self._follow(part)))
            elif is_last:
                return self._end(part, is_present=True)
            elif stat.S_ISDIR(info.st_mode):
                self._descend(part)
            elif make_parents:
                message = f"cannot create the directories of {self.path}: a file is in the way"
                raise ToolError("exists", message)
            else:
                raise ToolError("not_found", f"{self.path}: {part} is not a directory")
        return self._end("", is_present=True)

    def _look(self, name: str, *, is_last: bool, make_parents: bool) -> os.stat_result | None:
        """The component's own stat; None for a missing last one; a missing parent is made with
        `make_parents`, else `not_found`."""
        try:
            return os.stat(name, dir_fd=self.stack[-1], follow_symlinks=False)
        except FileNotFoundError:
            if is_last:
                return None
            if not make_parents:
                raise ToolError("not_found", f"{self.path} does not exist") from None
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=self.stack[-1])
        return os.stat(name, dir_fd=self.stack[-1], follow_symlinks=False)

    def _anchor(self, absolute: str) -> deque[str]:
        """Open the anchor `absolute` lies in; the components below it, to walk."""
        normal = Path(absolute)
        for anchor in sorted(self.anchors, key=lambda a: len(a.parts), reverse=True):
            if normal.is_relative_to(anchor):
                self.close()
                self.stack.append(os.open(anchor, _DIR))
                return deque(absolute[len(str(anchor)) :].split("/"))
        raise ToolError("outside_workspace", f"path is outside the workspace: {self.path}")

    def _up(self) -> None:
        if len(self.stack) > 1:
            os.close(self.stack.pop())
        elif not self.is_free:  # `..` above an anchor leaves what the rule allows
            raise ToolError("outside_workspace", f"path is outside the workspace: {self.path}")

    def _follow(self, name: str) -> list[str]:
        self.links += 1
        if self.links > MAX_LINKS:
            raise ToolError("invalid_arguments", f"too many symlinks in the path {self.path}")
        target = os.readlink(name, dir_fd=self.stack[-1])
        if not target.startswith("/"):
            return target.split("/")
        return list(self._anchor(target))

    def _descend(self, name: str) -> None:
        try:
            self.stack.append(os.open(name, _DIR, dir_fd=self.stack[-1]))
        except OSError as exc:  # swapped for a symlink or a file since the stat
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ToolError("failed", f"{self.path} changed while it was walked") from None
            raise

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.stack[-1], follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _end(self, name: str, *, is_present: bool) -> Located:
        return Located(dir_fd=self.stack[-1], name=name, shown=self.path, is_present=is_present)
