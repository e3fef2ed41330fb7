"""A conversation's downloads in this runner (SPEC §5.4): ids `dl<n>`, at most MAX_RUNNING at once,
each a task streaming into `.stellaclaw/downloads/<id>.part`, renamed onto its target when complete.
A target on the call's SSH remote is streamed over SFTP into `.<name>.<id>.part` beside it instead,
and renamed there.

The registry lives in the runner's `held` state, so a follow-up call finds it; `close()` ends its
downloads when the conversation or the runner goes. A download that fails or is cancelled leaves no
part file. Every workspace path goes through `services.tools.fs`; the part file and the rename are
small metadata operations and the writes are one chunk each, so they run on the loop.
"""

import asyncio
import contextlib
import os
import posixpath
import stat
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

import httpx
import msgspec

from services.tools import fs, net_guard
from services.tools.results import Result, ToolError
from services.tools.workspace import RemoteTarget, ToolCall, remote_for
from shared.messages.tools import ErrorKind

MAX_RUNNING = 8
PART_DIR = ".stellaclaw/downloads"
STALL_S = 300.0  # a server silent this long fails the download
HELD_KIND = "downloads"
State = Literal["running", "completed", "failed", "cancelled"]
Write = Callable[[bytes], Awaitable[None]]  # takes the next chunk of the body


class DownloadStatus(Result, frozen=True, kw_only=True):
    download_id: str
    url: str
    final_url: str
    file_path: str
    state: State
    http_status: int | None  # None until the response arrived
    content_type: str | None
    bytes_downloaded: int
    total_bytes: int | None = None  # when the server said
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    interrupted: bool = False  # a follow-up cut the wait short; the download goes on


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """What to download and where, as `file_download_start` was asked."""

    url: str
    file_path: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    overwrite: bool = False
    timeout_s: float = 3600.0


def registry(call: ToolCall) -> "Downloads":
    """The downloads of the call's conversation in this runner."""
    return call.runner.held(HELD_KIND, call.conversation_id, Downloads)


def check_target(call: ToolCall, file_path: str, *, overwrite: bool) -> None:
    """Refuse a target that is a directory, or exists without `overwrite` (parents are made)."""
    with fs.located(call, file_path, is_write=True, make_parents=True) as target:
        refuse_target(target, overwrite=overwrite)


def refuse_target(target: fs.Located, *, overwrite: bool) -> None:
    if not target.name:
        refuse(target.shown, is_dir=True, overwrite=overwrite)
    elif target.is_present:
        refuse(target.shown, is_dir=stat.S_ISDIR(target.stat().st_mode), overwrite=overwrite)


async def check_remote_target(
    call: ToolCall, target: RemoteTarget, file_path: str, *, overwrite: bool
) -> None:
    """`check_target` on the call's SSH remote, over SFTP."""
    from services.tools.remote import on_remote  # asyncssh: remote calls only

    async with on_remote.files(call, target) as files:
        found = await files.stat(file_path)
    if found is not None:
        refuse(file_path, is_dir=found.is_dir, overwrite=overwrite)


def refuse(shown: str, *, is_dir: bool, overwrite: bool) -> None:
    """Refuse a present target that is a directory, or any present one without `overwrite`."""
    if is_dir:
        raise ToolError("exists", f"{shown} is a directory; give the path of a file")
    if not overwrite:
        message = f"{shown} already exists; pass overwrite=true to replace it"
        raise ToolError("exists", message)


class Downloads:
    """A conversation's downloads in this runner, by id."""

    def __init__(self) -> None:
        self.known: dict[str, Download] = {}

    def start(self, order: Order, call: ToolCall, name: str) -> "Download":
        """A new download named `name` (from `handles.allocate`), streaming in its own task, if
        fewer than MAX_RUNNING are running."""
        self.check_room()
        download = Download(name, order, call)
        download.task = asyncio.create_task(download.run(), name=f"download {download.download_id}")
        self.known[download.download_id] = download
        return download

    def check_room(self) -> None:
        running = [d.download_id for d in self.known.values() if d.state == "running"]
        if len(running) >= MAX_RUNNING:
            raise ToolError(
                "limit_reached",
                f"{MAX_RUNNING} downloads are already running ({', '.join(running)});"
                " wait for one or cancel one first",
            )

    def get(self, download_id: str) -> "Download":
        found = self.known.get(download_id)
        if found is None:
            known = ", ".join(self.known) or "none started in this conversation"
            raise ToolError("not_found", f"no download {download_id!r}; known: {known}")
        return found

    async def end_all(self) -> None:
        """Cancel every running download (their part files are removed): the runner stops."""
        await asyncio.gather(*(download.cancel() for download in self.known.values()))


class Download:
    """One download: its status so far and the task that streams it."""

    def __init__(self, download_id: str, order: Order, call: ToolCall) -> None:
        self.download_id = download_id
        self.order = order
        self.call = call
        self.task: asyncio.Task[None] | None = None
        self.is_cancel_requested = False
        self.final_url = order.url
        self.state: State = "running"
        self.http_status: int | None = None
        self.content_type: str | None = None
        self.bytes_downloaded = 0
        self.total_bytes: int | None = None
        self.started_at = datetime.now(UTC)
        self.finished_at: datetime | None = None
        self.error: str | None = None
        self.error_kind: ErrorKind | None = None

    @property
    def part_path(self) -> str:
        return f"{PART_DIR}/{self.download_id}.part"

    @property
    def max_bytes(self) -> int:
        return self.call.runner.settings.tools.download_max_mb << 20

    def status(self, *, interrupted: bool = False) -> DownloadStatus:
        return DownloadStatus(
            download_id=self.download_id,
            url=self.order.url,
            final_url=self.final_url,
            file_path=self.order.file_path,
            state=self.state,
            http_status=self.http_status,
            content_type=self.content_type,
            bytes_downloaded=self.bytes_downloaded,
            total_bytes=self.total_bytes,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
            error_kind=self.error_kind,
            interrupted=interrupted,
        )

    async def settled(self, wait_s: float, cut_short: asyncio.Event) -> bool:
        """Wait until the download ends, `wait_s` passes or a follow-up cuts the wait short;
        whether it was cut short while still running."""
        if self.task is None or self.task.done() or wait_s <= 0:
            return False
        cut = asyncio.ensure_future(cut_short.wait())
        try:
            await asyncio.wait(
                {self.task, cut}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            cut.cancel()
        return cut_short.is_set() and not self.task.done()

    async def cancel(self) -> None:
        """Stop a running download and wait until its part file is gone."""
        if self.task is None or self.task.done():
            return
        self.is_cancel_requested = True
        self.task.cancel()
        await asyncio.wait({self.task})
        if self.state == "running":  # cancelled before it began, so `run` never ran
            self.end("cancelled")

    async def run(self) -> None:
        """Stream, then move into place; every way out ends the state and removes the part."""
        try:
            target = remote_for(self.call, self.order.file_path)
            if target is None:
                await self.save_local()
            else:
                await self.save_remote(target)
            self.end("completed")
        except ToolError as exc:
            self.end("failed", exc.kind, str(exc))
        except TimeoutError:
            message = f"the download did not finish within {self.order.timeout_s:g} s"
            self.end("failed", "timed_out", message)
        except httpx.HTTPError as exc:
            failure = net_guard.failure(exc, self.final_url)
            self.end("failed", failure.kind, str(failure))
        except OSError as exc:
            message = f"could not save {self.order.file_path}: {exc.strerror or exc}"
            self.end("failed", "failed", message)
        finally:
            if self.state == "running" and self.is_cancel_requested:
                self.end("cancelled")
            elif self.state == "running":  # a bug of ours: the task's exception says which
                self.end("failed", "failed", "the download stopped unexpectedly")

    async def save_local(self) -> None:
        """Into `.stellaclaw/downloads/<id>.part`, renamed onto the target when complete."""
        fd, _ = fs.open_file(self.call, self.part_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

        async def write(chunk: bytes) -> None:
            write_all(fd, chunk)

        try:
            try:
                await self.fill(write)
            finally:
                os.close(fd)
            self.move()
        except BaseException:
            with contextlib.suppress(ToolError, OSError):
                fs.remove(self.call, self.part_path)
            raise

    async def save_remote(self, target: RemoteTarget) -> None:
        """Streamed over SFTP into a temp file beside the target on the call's remote, renamed
        onto it when complete (SPEC §5.4); every other way out removes the temp file."""
        from services.tools.remote import on_remote  # asyncssh: remote downloads only

        order = self.order
        folder, name = posixpath.split(order.file_path)
        temp = posixpath.join(folder, f".{name[:200]}.{self.download_id}.part")
        async with on_remote.files(self.call, target) as files:
            try:
                async with files.open_write(temp) as out:
                    await self.fill(out.write)
                found = await files.stat(order.file_path)
                if found is not None:
                    refuse(order.file_path, is_dir=found.is_dir, overwrite=order.overwrite)
                await files.rename(temp, order.file_path)
            except BaseException:
                with contextlib.suppress(ToolError):
                    await files.remove(temp)
                raise

    async def fill(self, write: Write) -> None:
        """The body streamed into `write`, within the download's time limit."""
        async with asyncio.timeout(self.order.timeout_s):
            await self.stream(write)

    async def stream(self, write: Write) -> None:
        """Fetch the URL (every redirect hop checked) and give its body to `write`."""
        headers = dict(self.order.headers)
        if all(name.lower() != "accept-encoding" for name in headers):
            headers["Accept-Encoding"] = "identity"  # the file as served: total_bytes matches
        fetch = net_guard.Fetch(
            url=self.order.url,
            headers=headers,
            allow_private=self.call.runner.settings.tools.allow_private_network,
        )
        timeout_s = min(self.order.timeout_s, STALL_S)
        async with net_guard.client(timeout_s) as http, net_guard.opened(http, fetch) as reached:
            response = reached.response
            self.final_url = reached.url
            self.http_status = response.status_code
            self.content_type = response.headers.get("Content-Type")
            length = response.headers.get("Content-Length", "")
            self.total_bytes = int(length) if length.isdigit() else None
            if response.is_error:
                message = f"the server answered {response.status_code} {response.reason_phrase}"
                raise ToolError("failed", f"{message} for {reached.url}")
            self.check_size(self.total_bytes or 0)
            async for chunk in response.aiter_bytes():
                self.check_size(self.bytes_downloaded + len(chunk))
                await write(chunk)
                self.bytes_downloaded += len(chunk)

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            cap_mb = self.call.runner.settings.tools.download_max_mb
            message = f"the file is over the download cap of {cap_mb:,} MB (tools.download_max_mb)"
            raise ToolError("too_large", f"{message}; the operator can raise it")

    def move(self) -> None:
        """Rename the complete part file onto the target (checked again: it may have appeared)."""
        call, order = self.call, self.order
        with (
            fs.located(call, self.part_path, is_write=True, follow_last=False) as part,
            fs.located(call, order.file_path, is_write=True, make_parents=True) as target,
        ):
            refuse_target(target, overwrite=order.overwrite)
            os.replace(part.name, target.name, src_dir_fd=part.dir_fd, dst_dir_fd=target.dir_fd)

    def end(self, state: State, kind: ErrorKind | None = None, error: str | None = None) -> None:
        self.state = state
        self.error_kind = kind
        self.error = error
        self.finished_at = datetime.now(UTC)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
