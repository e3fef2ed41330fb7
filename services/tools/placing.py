"""Answers to `sc.tool.place.<pool>` (DESIGN §4): a message's attachments written from sc_files
into the workspace at their `upload/` paths (SPEC §2.4), asked by the session before the model
sees them. Any runner of the pool answers (queue group), one entry per file, in order:

    no object (its download failed), or an error  -> returned as it came
    nothing at the path                           -> written there (whole: temp file, then link)
    the same bytes at the path                    -> left as they are: asking again is harmless
    something else at the path (a link too)       -> the next free `-2`, `-3`, … before the
                                                     extension
    outside the workspace, unreadable, too slow   -> `error`: not placed in the workspace: <why>

Locally every path is walked race-free by `fs` (parents made, never out of the workspace);
in fixed remote mode the file goes to the remote root over SFTP.
"""

import asyncio
import logging
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from nats.micro.request import Request

from services.tools import fs, workspace
from services.tools.context import RunnerContext
from services.tools.results import ToolError
from services.tools.sandbox.host import SandboxHost
from services.tools.workspace import RemoteTarget, ToolCall
from shared import bus, files, subjects
from shared import logging as service_logging
from shared.errors import TransientError
from shared.messages.contract import Attachment
from shared.messages.tools import PLACE_FILES, FilesPlaced, PlaceFiles

if TYPE_CHECKING:
    from services.tools.remote.files import RemoteFiles

ANSWER_WITHIN_S = 50.0  # the session waits 60 s for the answer
MAX_NUMBER = 1000  # `-2` … `-1000` beside the path, then the file is not placed
NOT_PLACED = "not placed in the workspace: "
log = logging.getLogger(__name__)


class Placer:
    """One runner's answers to PlaceFiles (in the order they come)."""

    def __init__(
        self, conn: bus.Connection, workdir: Path, host: SandboxHost, context: RunnerContext
    ) -> None:
        self.conn = conn
        self.workdir = workdir
        self.host = host
        self.context = context

    async def answer(self, request: Request) -> None:
        asked = await bus.decoded(self.conn, PLACE_FILES, request.data, request.subject)
        if asked is None:
            await request.respond_error("400", "expected a PlaceFiles")
            return
        service_logging.conv_var.set(asked.conversation_id)
        deadline = asyncio.get_running_loop().time() + ANSWER_WITHIN_S
        placed = [await self.one(asked, file, deadline) for file in asked.files]
        await request.respond(bus.encode(FilesPlaced(placed=placed)))
        pairs = zip(asked.files, placed, strict=True)
        refused = sum(1 for before, after in pairs if after.error != before.error)
        log.info("placed files", extra={"files": len(placed), "refused": refused})

    async def one(self, asked: PlaceFiles, file: Attachment, deadline: float) -> Attachment:
        """The file with the path it is at now, or with why it is not there."""
        if not file.object_name or file.error:
            return file
        try:
            async with asyncio.timeout_at(deadline):
                path = await self.put(asked, file)
        except (ToolError, TransientError) as exc:
            return not_placed(file, str(exc))
        except TimeoutError:
            return not_placed(file, f"it took over {ANSWER_WITHIN_S:g} s")
        except OSError as exc:  # the host refused (permissions, a full disk)
            log.warning("placing %s failed on the host", file.object_name, exc_info=True)
            return not_placed(file, f"{file.path}: {exc.strerror or exc}")
        except Exception as exc:  # a fault of ours: the session hears of it, the runner goes on
            log.exception("placing %s failed unexpectedly", file.object_name)
            return not_placed(file, f"placing failed unexpectedly ({type(exc).__name__})")
        return msgspec.structs.replace(file, path=path)

    async def put(self, asked: PlaceFiles, file: Attachment) -> str:
        """Write the file into the workspace; the path it is at."""
        if file.path.startswith("/"):
            raise ToolError("outside_workspace", f"path is outside the workspace: {file.path}")
        call = self.call_for(asked)
        data = await files.read_bytes(self.conn, file.object_name)
        if data is None:
            message = f"{subjects.FILES_STORE} no longer holds {file.object_name}"
            raise ToolError("not_found", message)
        target = workspace.remote_for(call, file.path)
        if target is None:
            return await asyncio.to_thread(place_local, call, file.path, data)
        return await place_remote(call, target, file.path, data)

    def call_for(self, asked: PlaceFiles) -> ToolCall:
        """The workspace as a tool sees it, confined whatever the conversation's sandbox."""
        root, shared = workspace.opened(asked.workspace, self.workdir)
        return ToolCall(
            call_id="place",
            conversation_id=asked.conversation_id,
            root=root,
            shared=shared,
            timeout_s=ANSWER_WITHIN_S,
            mode="subprocess",  # any mode but `disabled` keeps the walk inside the workspace
            host=self.host,
            runner=self.context,
            remote=workspace.fixed_remote(asked.workspace),
        )


def not_placed(file: Attachment, why: str) -> Attachment:
    return msgspec.structs.replace(file, error=NOT_PLACED + why)


def numbered(path: str, number: int) -> str:
    """`path` itself for 1, else `-<number>` before its extension (`upload/a-2.pdf`)."""
    if number == 1:
        return path
    folder, name = posixpath.split(path)
    stem, extension = posixpath.splitext(name)
    return posixpath.join(folder, f"{stem}-{number}{extension}")


def taken(path: str) -> ToolError:
    return ToolError("exists", f"{path} and {MAX_NUMBER - 1} numbered names beside it are taken")


def place_local(call: ToolCall, path: str, data: bytes) -> str:
    """Where `data` is now: at `path` or the first numbered name that is free or holds it.
    A link at a name counts as taken: a file is never written through one."""
    for number in range(1, MAX_NUMBER + 1):
        candidate = numbered(path, number)
        with fs.located(
            call, candidate, is_write=True, make_parents=True, follow_last=False
        ) as end:
            if not end.name:
                raise ToolError("invalid_arguments", f"{path} is a directory")
            if (not end.is_present and fs.create_new(end, data)) or fs.holds(end, data):
                return candidate
    raise taken(path)


async def place_remote(call: ToolCall, target: RemoteTarget, path: str, data: bytes) -> str:
    """`place_local` on the remote root (the SSH account is the boundary there, SPEC §6.6)."""
    from services.tools.remote import on_remote  # asyncssh: remote workspaces only

    async with on_remote.files(call, target) as remote:
        for number in range(1, MAX_NUMBER + 1):
            candidate = numbered(path, number)
            if await remote.write_new(candidate, data) or await remote_holds(
                remote, candidate, data
            ):
                return candidate
    raise taken(path)


async def remote_holds(remote: "RemoteFiles", path: str, data: bytes) -> bool:
    found = await remote.stat(path)
    if found is None or not found.is_file or found.size != len(data):
        return False
    return await remote.read_bytes(path, len(data)) == data
