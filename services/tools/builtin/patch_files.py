"""The files an `apply_patch` call touches (SPEC §5.1, §6.6), each where it lives: in the local
workspace through `services.tools.fs` (whose walk keeps every path, symlinks followed, in the
workspace), or on the call's SSH remote over SFTP. In fixed remote mode one patch may touch both:
`.skill/`, `.stellaclaw/` and `shared/` stay on the runner host."""

import asyncio
import stat
from typing import TYPE_CHECKING, Literal

from services.tools import fs
from services.tools.builtin.edit import MAX_FILE_BYTES
from services.tools.results import ToolError
from services.tools.workspace import ToolCall, remote_for

if TYPE_CHECKING:  # for the annotations only: asyncssh stays unimported by local calls
    from services.tools.remote.files import RemoteFiles

PathKind = Literal["missing", "directory", "file"]  # "file": anything that is no directory


class PatchFiles:
    """Reads and writes of one patch, sent per path to the workspace or to the remote."""

    def __init__(self, call: ToolCall, remote: "RemoteFiles | None" = None) -> None:
        self.call = call
        self.remote = remote  # the call's remote files, open for the patch; None: all local

    def _remote_of(self, path: str) -> "RemoteFiles | None":
        if self.remote is None or remote_for(self.call, path) is None:
            return None
        return self.remote

    async def kind(self, path: str) -> PathKind:
        """What `path` names, symlinks followed. A local path the call may not write (outside
        the workspace) is refused here, before anything is written."""
        remote = self._remote_of(path)
        if remote is None:
            return await asyncio.to_thread(_local_kind, self.call, path)
        found = await remote.stat(path)  # a part of the path that is a file: missing
        if found is None:
            return "missing"
        return "directory" if found.is_dir else "file"

    async def read(self, path: str) -> bytes:
        remote = self._remote_of(path)
        if remote is None:
            return await asyncio.to_thread(fs.read_bytes, self.call, path, MAX_FILE_BYTES)
        return await remote.read_bytes(path, MAX_FILE_BYTES)

    async def write(self, path: str, data: bytes) -> None:
        """Replace or create the file atomically (parents made, the mode kept)."""
        remote = self._remote_of(path)
        if remote is None:
            await asyncio.to_thread(fs.write_atomically, self.call, path, data)
        else:
            await remote.write_atomically(path, data)

    async def remove(self, path: str) -> None:
        remote = self._remote_of(path)
        if remote is None:
            await asyncio.to_thread(fs.remove, self.call, path)
        else:
            await remote.remove(path)


def _local_kind(call: ToolCall, path: str) -> PathKind:
    try:
        with fs.located(call, path, is_write=True) as end:
            if not end.name:
                return "directory"
            if not end.is_present:
                return "missing"
            return "directory" if stat.S_ISDIR(end.stat().st_mode) else "file"
    except ToolError as exc:
        if exc.kind == "not_found":  # a missing parent directory
            return "missing"
        raise
