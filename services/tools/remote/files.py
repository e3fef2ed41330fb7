"""File operations on an SSH remote over SFTP (SPEC §5.0, §6.6), with the local tools' errors.

On a remote, relative paths resolve against the remote root and absolute paths are allowed: the SSH
account is the boundary, so there is no confined walk as in `services.tools.fs`. Results and
`error_kind`s match `fs` (`not_found`, `exists`, `invalid_arguments`, `too_large`, `failed`), so a
tool answers alike on either side; a lost connection is `remote_unreachable`. Messages show the
path as the model gave it.
"""

import contextlib
import os
import posixpath
from collections.abc import AsyncIterator, Iterator

import asyncssh
import msgspec

from services.tools.fs import check_syntax
from services.tools.results import ToolError

_MISSING = (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath, asyncssh.SFTPNotADirectory)
_LOST = (
    asyncssh.SFTPConnectionLost,
    asyncssh.SFTPNoConnection,
    asyncssh.DisconnectError,  # ConnectionLost too
    asyncssh.ChannelOpenError,
    ConnectionError,
)
_DIRS_REFUSED = (asyncssh.SFTPFailure, asyncssh.SFTPNotADirectory, asyncssh.SFTPFileAlreadyExists)


class RemoteStat(msgspec.Struct, frozen=True, kw_only=True):
    """What a remote path is (links followed)."""

    is_dir: bool
    is_file: bool  # a regular file
    size: int
    mtime_ns: int  # whole seconds on SFTP version 3
    mode: int  # the permission bits


class RemoteWriter:
    """A remote file open for writing, from `RemoteFiles.open_write`."""

    def __init__(self, target: asyncssh.SFTPClientFile, shown: str, remote: str) -> None:
        self._target = target
        self._shown = shown
        self._remote = remote

    async def write(self, data: bytes) -> None:
        with sftp_errors(self._shown, self._remote):
            await self._target.write(data)


class RemoteFiles:
    """The files of one remote workspace, through an open SFTP client (the caller owns it)."""

    def __init__(self, sftp: asyncssh.SFTPClient, root: str, *, remote: str) -> None:
        self.sftp = sftp
        self.root = root
        self.remote = remote  # the remote's name, for `remote_unreachable`

    def resolve(self, path: str) -> str:
        """`path` joined to the root unless absolute, normalized (`..` is allowed)."""
        check_syntax(path)
        return posixpath.normpath(posixpath.join(self.root, path))

    async def stat(self, path: str) -> RemoteStat | None:
        """What `path` is, links followed; None when it does not exist."""
        with sftp_errors(path, self.remote):
            return await self._stat(self.resolve(path))

    async def read_bytes(self, path: str, limit: int) -> bytes:
        """The file's bytes, up to `limit` (a longer file is `too_large`)."""
        resolved = self.resolve(path)
        with sftp_errors(path, self.remote):
            info = await self._stat(resolved)
            if info is None:
                raise ToolError("not_found", f"{path} does not exist")
            if not info.is_file:
                what = "is a directory" if info.is_dir else "is not a regular file"
                raise ToolError("invalid_arguments", f"{path} {what}")
            async with self.sftp.open(resolved, "rb") as source:
                data: bytes = await source.read(limit + 1)
        if len(data) > limit:
            raise ToolError("too_large", f"{path} is over {limit:,} bytes")
        return data

    async def write_atomically(self, path: str, data: bytes) -> bool:
        """Put `data` at `path` through a temp file beside it and a rename (parents created); an
        existing file keeps its mode, a link is written through. Whether the file was created."""
        with sftp_errors(path, self.remote):
            target = await self._link_target(self.resolve(path))
            kept = await self._stat(target)
            if kept is not None and kept.is_dir:
                raise ToolError("exists", f"{path} is a directory; give the path of a file")
            if kept is not None and not kept.is_file:
                raise ToolError("failed", f"{path} is not a regular file")
            await self._make_dirs(posixpath.dirname(target), path)
            await self._replace(target, data, kept)
        return kept is None

    async def write_new(self, path: str, data: bytes) -> bool:
        """Put `data` at `path` through a temp file and a rename (parents created) unless
        something, a link too, is there already. Whether it was written."""
        resolved = self.resolve(path)
        with sftp_errors(path, self.remote):
            if await self._lexists(resolved):
                return False
            await self._make_dirs(posixpath.dirname(resolved), path)
            await self._replace(resolved, data, None)
        return True

    async def append(self, path: str, data: bytes) -> bool:
        """Add `data` to the end of `path` (parents created); whether the file was created."""
        resolved = self.resolve(path)
        with sftp_errors(path, self.remote):
            info = await self._writable(resolved, path)
            async with self.sftp.open(resolved, "ab") as target:
                await target.write(data)
        return info is None

    @contextlib.asynccontextmanager
    async def open_write(self, path: str) -> AsyncIterator[RemoteWriter]:
        """`path` emptied or created (parents too) for streaming writes; closed on exit."""
        resolved = self.resolve(path)
        with sftp_errors(path, self.remote):
            await self._writable(resolved, path)
            target = await self.sftp.open(resolved, "wb")
        try:
            yield RemoteWriter(target, path, self.remote)
        except BaseException:
            with contextlib.suppress(asyncssh.Error, OSError):
                await target.close()
            raise
        with sftp_errors(path, self.remote):
            await target.close()

    async def remove(self, path: str) -> None:
        """Delete the file `path` names (a link itself, not its target)."""
        resolved = self.resolve(path)
        with sftp_errors(path, self.remote):
            try:
                attrs = await self.sftp.lstat(resolved)
            except _MISSING:
                raise ToolError("not_found", f"{path} does not exist") from None
            if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                raise ToolError("invalid_arguments", f"{path} is a directory")
            await self.sftp.remove(resolved)

    async def make_dirs(self, path: str) -> None:
        """Create the directory `path` names and its parents (present ones are fine)."""
        with sftp_errors(path, self.remote):
            await self._make_dirs(self.resolve(path), path)

    async def rename(self, source: str, target: str) -> None:
        """Move `source` onto `target`, replacing a file there (parents created)."""
        old, new = self.resolve(source), self.resolve(target)
        with sftp_errors(source, self.remote):
            if not await self._lexists(old):
                raise ToolError("not_found", f"{source} does not exist")
        with sftp_errors(target, self.remote):
            found = await self._stat(new)
            if found is not None and found.is_dir:
                raise ToolError("exists", f"{target} is a directory; give the path of a file")
            await self._make_dirs(posixpath.dirname(new), target)
            await self._move(old, new)

    async def _stat(self, resolved: str) -> RemoteStat | None:
        try:
            attrs = await self.sftp.stat(resolved)
        except _MISSING:
            return None
        seconds_ns = (attrs.mtime or 0) * 1_000_000_000
        return RemoteStat(
            is_dir=attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY,
            is_file=attrs.type == asyncssh.FILEXFER_TYPE_REGULAR,
            size=attrs.size or 0,
            mtime_ns=seconds_ns + (attrs.mtime_ns or 0),
            mode=(attrs.permissions or 0) & 0o7777,
        )

    async def _lexists(self, resolved: str) -> bool:
        try:
            await self.sftp.lstat(resolved)
        except _MISSING:
            return False
        return True

    async def _writable(self, resolved: str, shown: str) -> RemoteStat | None:
        """What is at `resolved` (refused if it is no regular file), its parents made."""
        info = await self._stat(resolved)
        if info is not None and info.is_dir:
            raise ToolError("invalid_arguments", f"{shown} is a directory")
        if info is not None and not info.is_file:
            raise ToolError("failed", f"{shown} is not a regular file")
        await self._make_dirs(posixpath.dirname(resolved), shown)
        return info

    async def _link_target(self, resolved: str) -> str:
        """Where a link at `resolved` points (so it is written through), else `resolved`."""
        try:
            attrs = await self.sftp.lstat(resolved)
            if attrs.type != asyncssh.FILEXFER_TYPE_SYMLINK:
                return resolved
            real = await self.sftp.realpath(resolved)
        except _MISSING:  # nothing there yet, or a broken link: replaced like a file
            return resolved
        return real if isinstance(real, str) else resolved

    async def _make_dirs(self, folder: str, shown: str) -> None:
        if folder in ("", "."):
            return
        try:
            await self.sftp.makedirs(folder, exist_ok=True)
        except _DIRS_REFUSED:
            if not await self._is_blocked(folder):
                raise
            message = f"cannot create the directories of {shown}: a file is in the way"
            raise ToolError("exists", message) from None

    async def _is_blocked(self, folder: str) -> bool:
        """Whether something that is no directory sits at `folder` or above it."""
        while True:
            info = await self._stat(folder)
            if info is not None:
                return not info.is_dir
            parent = posixpath.dirname(folder)
            if parent == folder:
                return False
            folder = parent

    async def _replace(self, target: str, data: bytes, kept: RemoteStat | None) -> None:
        folder, name = posixpath.split(target)
        temp = posixpath.join(folder, f".{name[:200]}.{os.urandom(6).hex()}.tmp")
        try:
            async with self.sftp.open(temp, "xb") as out:
                await out.write(data)
                if kept is not None:
                    await out.chmod(kept.mode)
                with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                    await out.fsync()
            await self._move(temp, target)
        except BaseException:
            with contextlib.suppress(asyncssh.Error, OSError):
                await self.sftp.remove(temp)
            raise

    async def _move(self, source: str, target: str) -> None:
        """Rename, replacing `target` atomically where the server has `posix-rename`."""
        try:
            await self.sftp.posix_rename(source, target)
        except asyncssh.SFTPOpUnsupported:  # a plain SFTP rename never replaces a file
            with contextlib.suppress(*_MISSING):
                await self.sftp.remove(target)
            await self.sftp.rename(source, target)


@contextlib.contextmanager
def sftp_errors(shown: str, remote: str) -> Iterator[None]:
    """SFTP and connection errors in the block as the ToolErrors the local tools give."""
    try:
        yield
    except _LOST as exc:
        reason = str(exc) or type(exc).__name__
        raise ToolError("remote_unreachable", f"cannot reach remote {remote}: {reason}") from None
    except asyncssh.SFTPError as exc:
        raise as_tool_error(exc, shown) from None


def as_tool_error(exc: asyncssh.SFTPError, shown: str) -> ToolError:
    match exc:
        case asyncssh.SFTPNoSuchFile() | asyncssh.SFTPNoSuchPath():
            return ToolError("not_found", f"{shown} does not exist")
        case asyncssh.SFTPNotADirectory():
            return ToolError("not_found", f"{shown}: a part of the path is not a directory")
        case asyncssh.SFTPFileIsADirectory():
            return ToolError("invalid_arguments", f"{shown} is a directory")
        case asyncssh.SFTPFileAlreadyExists():
            return ToolError("exists", f"{shown} already exists")
        case asyncssh.SFTPLinkLoop():
            return ToolError("invalid_arguments", f"too many symlinks in the path {shown}")
        case _:
            return ToolError("failed", f"{shown}: {exc.reason or type(exc).__name__}")
