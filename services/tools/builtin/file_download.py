"""`file_download_start`, `_progress`, `_wait` and `_cancel` (SPEC §5.4): a URL saved to a file in
the workspace (or on the call's SSH remote) by a download that runs on in this runner while the
model does other things."""

import asyncio
from typing import Annotated

import msgspec
from msgspec import Meta

from services.tools import handles, net_guard
from services.tools.builtin.downloads import (
    Download,
    DownloadStatus,
    Order,
    check_remote_target,
    check_target,
    registry,
)
from services.tools.workspace import ToolCall, remote_for

SLACK_S = 10.0  # beyond wait_s, before the runner's own limit cuts in
DownloadId = Annotated[
    str, Meta(min_length=1, max_length=32, description="the id file_download_start gave, dl<n>")
]


class FileDownloadStartArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Download a URL (http or https) to a file in the workspace; the download goes on in the
    background. Returns its status once it finished or after wait_s, with a download_id to poll
    with file_download_progress or file_download_wait. Loopback and private addresses are refused
    unless the operator allows them."""

    url: Annotated[str, Meta(min_length=1, max_length=8192, description="an http or https URL")]
    file_path: Annotated[
        str, Meta(min_length=1, description="where to save it, relative to the workspace")
    ]
    headers: Annotated[dict[str, str], Meta(description="request headers")] = msgspec.field(
        default_factory=dict
    )
    overwrite: Annotated[bool, Meta(description="replace an existing file")] = False
    wait_s: Annotated[
        float, Meta(ge=0, le=300, description="seconds to wait for it to finish before returning")
    ] = 30.0
    timeout_s: Annotated[
        float, Meta(ge=1, le=86_400, description="seconds until the download is given up")
    ] = 3600.0


class FileDownloadProgressArgs(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Return the status of a download now: state, bytes downloaded and total, errors."""

    download_id: DownloadId


class FileDownloadWaitArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Wait for a download to finish, at most wait_s seconds, and return its status."""

    download_id: DownloadId
    wait_s: Annotated[float, Meta(ge=1, le=300, description="seconds to wait at most")] = 60.0


class FileDownloadCancelArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Cancel a running download; its partial file is removed."""

    download_id: DownloadId


def start_limit_s(args: FileDownloadStartArgs) -> float:
    """The start call's hard limit: its wait and some slack (the download itself runs on)."""
    return args.wait_s + SLACK_S


def wait_limit_s(args: FileDownloadWaitArgs) -> float:
    return args.wait_s + SLACK_S


async def file_download_start(args: FileDownloadStartArgs, call: ToolCall) -> DownloadStatus:
    net_guard.parsed(args.url)
    target = remote_for(call, args.file_path)
    if target is None:
        await asyncio.to_thread(check_target, call, args.file_path, overwrite=args.overwrite)
    else:
        await check_remote_target(call, target, args.file_path, overwrite=args.overwrite)
    order = Order(
        url=args.url,
        file_path=args.file_path,
        headers=args.headers,
        overwrite=args.overwrite,
        timeout_s=args.timeout_s,
    )
    downloads = registry(call)
    downloads.check_room()
    name = await asyncio.to_thread(handles.allocate, call, "dl", args.url)
    download = downloads.start(order, call, name)
    try:
        interrupted = await download.settled(args.wait_s, call.cut_short)
    except asyncio.CancelledError:  # the call was cancelled (/cancel): so is what it started
        await download.cancel()
        raise
    return download.status(interrupted=interrupted)


async def find(call: ToolCall, download_id: str) -> Download:
    """The download, if this runner holds it; one another runner holds is sent there."""
    downloads = registry(call)
    if download_id not in downloads.known:
        record = await asyncio.to_thread(handles.read, call, download_id)
        if record is not None and record.runner_id != call.runner.runner_id:
            raise handles.HeldElsewhereError(record.runner_id, f"download {download_id}")
    return downloads.get(download_id)


async def file_download_progress(args: FileDownloadProgressArgs, call: ToolCall) -> DownloadStatus:
    return (await find(call, args.download_id)).status()


async def file_download_wait(args: FileDownloadWaitArgs, call: ToolCall) -> DownloadStatus:
    download = await find(call, args.download_id)
    interrupted = await download.settled(args.wait_s, call.cut_short)
    return download.status(interrupted=interrupted)


async def file_download_cancel(args: FileDownloadCancelArgs, call: ToolCall) -> DownloadStatus:
    download = await find(call, args.download_id)
    await download.cancel()
    return download.status()
