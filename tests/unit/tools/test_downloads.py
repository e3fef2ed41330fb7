"""The download tools per SPEC §5.4 against a real HTTP server on 127.0.0.1: start, progress, wait,
cancel, the part file, overwrite, the size cap, the 8-download limit and follow-ups."""

import asyncio

import msgspec
import pytest

from services.tools.builtin.downloads import MAX_RUNNING, DownloadStatus, registry
from services.tools.builtin.file_download import (
    FileDownloadCancelArgs,
    FileDownloadProgressArgs,
    FileDownloadStartArgs,
    FileDownloadWaitArgs,
    file_download_cancel,
    file_download_progress,
    file_download_start,
    file_download_wait,
    start_limit_s,
)
from services.tools.catalog import decode
from services.tools.context import RunnerContext, Settings
from services.tools.results import ToolError
from services.tools.workspace import ToolCall
from shared.tools_config import ToolsConfig
from tests.kit import web_pages
from tests.kit.waiting import eventually_async
from tests.unit.tools.samples import tool_call

MIB = 1 << 20
PART = ".stellaclaw/downloads/dl1.part"


@pytest.fixture
async def site():
    async with web_pages.serving() as served:
        yield served


def allowing(call: ToolCall, download_max_mb: int = 2048) -> ToolCall:
    """The call on a runner that allows private addresses (the test site is on loopback)."""
    tools = ToolsConfig(allow_private_network=True, download_max_mb=download_max_mb)
    settings = Settings(tools=tools)
    return msgspec.structs.replace(call, runner=RunnerContext(settings=settings))


@pytest.fixture
async def call(workdir):
    made = allowing(tool_call(workdir))
    yield made
    await registry(made).end_all()  # no download outlives its test


async def start(call, url: str, file_path: str = "got/file.bin", **arguments) -> DownloadStatus:
    args = FileDownloadStartArgs(url=url, file_path=file_path, **arguments)
    return await file_download_start(args, call)


async def progress(call, download_id: str = "dl1") -> DownloadStatus:
    return await file_download_progress(FileDownloadProgressArgs(download_id=download_id), call)


def has_part(call: ToolCall) -> bool:
    return (call.root / PART).exists()


async def test_a_quick_download_completes_within_its_wait(call, site):
    status = await start(call, site.url("/redirect/1"), file_path="pages/page.html")
    assert (status.download_id, status.state, status.http_status) == ("dl1", "completed", 200)
    assert (status.url, status.final_url) == (site.url("/redirect/1"), site.url("/page.html"))
    assert status.bytes_downloaded == status.total_bytes == len(web_pages.PAGE.encode())
    assert status.content_type == "text/html; charset=utf-8"
    assert status.finished_at is not None
    assert status.finished_at >= status.started_at
    assert (call.root / "pages/page.html").read_text(encoding="utf-8") == web_pages.PAGE
    assert not has_part(call)


async def test_progress_shows_a_running_download_then_wait_sees_it_finish(call, site):
    size = web_pages.CHUNK_BYTES * 3
    started = await start(call, site.url(f"/gated/{size}"), wait_s=0)
    assert (started.state, started.download_id, started.finished_at) == ("running", "dl1", None)
    halfway = await eventually_status(call, lambda s: s.bytes_downloaded == web_pages.CHUNK_BYTES)
    assert (halfway.bytes_downloaded, halfway.total_bytes) == (web_pages.CHUNK_BYTES, size)
    assert (halfway.state, halfway.http_status) == ("running", 200)
    assert has_part(call)
    site.gate.set()
    done = await file_download_wait(FileDownloadWaitArgs(download_id="dl1", wait_s=30), call)
    assert (done.state, done.bytes_downloaded, done.interrupted) == ("completed", size, False)
    assert (call.root / "got/file.bin").stat().st_size == size
    assert not has_part(call)


async def test_wait_returns_the_running_status_after_wait_s(call, site):
    await start(call, site.url(f"/gated/{MIB}"), wait_s=0)
    status = await file_download_wait(FileDownloadWaitArgs(download_id="dl1", wait_s=1), call)
    assert (status.state, status.interrupted) == ("running", False)


async def test_cancel_stops_the_download_and_removes_the_part_file(call, site):
    await start(call, site.url(f"/gated/{MIB}"), wait_s=0)
    await eventually_status(call, lambda s: s.bytes_downloaded == web_pages.CHUNK_BYTES)
    assert has_part(call)
    status = await file_download_cancel(FileDownloadCancelArgs(download_id="dl1"), call)
    assert (status.state, status.bytes_downloaded) == ("cancelled", web_pages.CHUNK_BYTES)
    assert status.finished_at is not None
    assert not has_part(call)
    assert not (call.root / "got/file.bin").exists()
    assert (await progress(call)).state == "cancelled"


async def test_a_download_cancelled_before_it_began_is_cancelled(call, site):
    await start(call, site.url("/notes.txt"), wait_s=0)
    status = await file_download_cancel(FileDownloadCancelArgs(download_id="dl1"), call)
    assert (status.state, status.bytes_downloaded) == ("cancelled", 0)
    assert not has_part(call)


async def test_a_follow_up_cuts_the_wait_short_and_the_download_goes_on(call, site):
    starting = asyncio.ensure_future(start(call, site.url(f"/gated/{MIB}"), wait_s=300))
    await eventually_status(call, lambda s: s.bytes_downloaded == web_pages.CHUNK_BYTES)
    call.cut_short.set()
    status = await starting
    assert (status.state, status.interrupted) == ("running", True)
    later = msgspec.structs.replace(call, cut_short=asyncio.Event())  # the next turn's call
    waiting = asyncio.ensure_future(
        file_download_wait(FileDownloadWaitArgs(download_id="dl1", wait_s=300), later)
    )
    later.cut_short.set()
    assert (await waiting).interrupted
    site.gate.set()
    last = msgspec.structs.replace(call, cut_short=asyncio.Event())
    done = await file_download_wait(FileDownloadWaitArgs(download_id="dl1", wait_s=30), last)
    assert (done.state, done.bytes_downloaded, done.interrupted) == ("completed", MIB, False)


async def test_cancelling_the_start_call_cancels_its_download(call, site):
    starting = asyncio.ensure_future(start(call, site.url(f"/gated/{MIB}"), wait_s=300))
    await eventually_status(call, lambda s: s.bytes_downloaded == web_pages.CHUNK_BYTES)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert (await progress(call)).state == "cancelled"
    assert not has_part(call)


async def test_an_existing_target_needs_overwrite(call, site):
    target = call.root / "got/file.bin"
    target.parent.mkdir()
    target.write_text("old", encoding="utf-8")
    with pytest.raises(ToolError) as caught:
        await start(call, site.url("/notes.txt"))
    assert (caught.value.kind, str(caught.value)) == (
        "exists",
        "got/file.bin already exists; pass overwrite=true to replace it",
    )
    assert registry(call).known == {}
    status = await start(call, site.url("/notes.txt"), overwrite=True)
    assert status.state == "completed"
    assert target.read_text(encoding="utf-8") == "line one\nline two\n"


async def test_a_directory_is_no_target(call, site):
    (call.root / "got").mkdir()
    with pytest.raises(ToolError) as caught:
        await start(call, site.url("/notes.txt"), file_path="got", overwrite=True)
    assert (caught.value.kind, str(caught.value)) == (
        "exists",
        "got is a directory; give the path of a file",
    )


async def test_a_target_outside_the_workspace_is_refused(call, site):
    with pytest.raises(ToolError) as caught:
        await start(call, site.url("/notes.txt"), file_path="../escape.bin")
    assert caught.value.kind == "outside_workspace"


@pytest.mark.parametrize("length", ["yes", "no"])
async def test_a_file_over_the_cap_fails_and_leaves_nothing(workdir, site, length):
    call = allowing(tool_call(workdir), download_max_mb=1)
    status = await start(call, site.url(f"/large/{2 * MIB}?length={length}"))
    assert (status.state, status.error_kind) == ("failed", "too_large")
    assert status.error == (
        "the file is over the download cap of 1 MB (tools.download_max_mb);"
        " the operator can raise it"
    )
    assert status.bytes_downloaded <= MIB
    assert not has_part(call)
    assert not (call.root / "got/file.bin").exists()


async def test_an_error_status_fails_the_download(call, site):
    status = await start(call, site.url("/status/404"))
    assert (status.state, status.http_status, status.error_kind) == ("failed", 404, "failed")
    assert status.error == f"the server answered 404 Not Found for {site.url('/status/404')}"
    assert not has_part(call)


async def test_private_addresses_are_refused_by_default(workdir, site):
    status = await start(tool_call(workdir), site.url("/notes.txt"))
    assert (status.state, status.error_kind) == ("failed", "invalid_arguments")
    assert status.error == (
        "refusing to fetch a private address (127.0.0.1); the operator can allow it"
    )
    assert site.methods == []


async def test_at_most_8_downloads_run_at_once(call, site):
    for number in range(1, MAX_RUNNING + 1):
        status = await start(call, site.url(f"/gated/{MIB}"), file_path=f"f{number}", wait_s=0)
        assert status.download_id == f"dl{number}"
    with pytest.raises(ToolError) as caught:
        await start(call, site.url("/notes.txt"), file_path="one_more", wait_s=0)
    assert caught.value.kind == "limit_reached"
    assert str(caught.value) == (
        "8 downloads are already running (dl1, dl2, dl3, dl4, dl5, dl6, dl7, dl8);"
        " wait for one or cancel one first"
    )
    await file_download_cancel(FileDownloadCancelArgs(download_id="dl3"), call)
    assert (await start(call, site.url("/notes.txt"), file_path="one_more")).state == "completed"


async def test_an_unknown_id_names_the_known_ones(call, site):
    with pytest.raises(ToolError) as caught:
        await progress(call, "dl9")
    assert (caught.value.kind, str(caught.value)) == (
        "not_found",
        "no download 'dl9'; known: none started in this conversation",
    )
    await start(call, site.url("/notes.txt"))
    calls = [
        file_download_progress(FileDownloadProgressArgs(download_id="dl9"), call),
        file_download_wait(FileDownloadWaitArgs(download_id="dl9"), call),
        file_download_cancel(FileDownloadCancelArgs(download_id="dl9"), call),
    ]
    for calling in calls:
        with pytest.raises(ToolError) as caught:
            await calling
        assert str(caught.value) == "no download 'dl9'; known: dl1"


async def test_downloads_belong_to_their_conversation(call, site):
    await start(call, site.url("/notes.txt"))
    other = msgspec.structs.replace(call, conversation_id="tg_2")
    with pytest.raises(ToolError):
        await progress(other)


def test_the_arguments_take_spec_defaults_and_limits():
    decoder = msgspec.json.Decoder(FileDownloadStartArgs)
    args = decode(decoder, FileDownloadStartArgs, b'{"url": "http://a.b/", "file_path": "f"}')
    assert (args.headers, args.overwrite, args.wait_s, args.timeout_s) == ({}, False, 30.0, 3600.0)
    assert start_limit_s(args) == 40.0
    wait = decode(
        msgspec.json.Decoder(FileDownloadWaitArgs), FileDownloadWaitArgs, b'{"download_id": "dl1"}'
    )
    assert wait.wait_s == 60.0
    with pytest.raises(ToolError):
        decode(decoder, FileDownloadStartArgs, b'{"url": "u", "file_path": "f", "wait_s": 301}')


async def eventually_status(call, check) -> DownloadStatus:
    """The download's status once `check` holds for it (polled with a deadline)."""

    async def matching() -> DownloadStatus | None:
        if "dl1" not in registry(call).known:  # the start call is still checking its target
            return None
        now = await progress(call)
        return now if check(now) else None

    return await eventually_async(matching, what="the download's status")
