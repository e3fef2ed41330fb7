"""SPEC §6.1 `subprocess` mode: a fresh `bash -c` in its own session and process group.

The child sees only the §6.2 environment, never this service's (it holds the model keys and the
bot token), and runs under the §6.3 limits. The limits are set by `ulimit` in a small bash wrapper
that then execs the command, so no Python runs between fork and exec (the event loop may have
threads). A timeout ends the whole group: SIGTERM, then SIGKILL once the command has exited or
KILL_AFTER_S has passed; a cancelled call's group gets SIGKILL CANCEL_GRACE_S after SIGTERM.
"""

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

PATH = "/usr/local/bin:/usr/bin:/bin"
MEMORY_LIMIT_MIB = 4096
FILE_SIZE_LIMIT_MIB = 2048
OPEN_FILES_LIMIT = 4096
PROCESS_LIMIT = 256  # RLIMIT_NPROC counts every process of the user; root ignores it
KILL_AFTER_S = 5.0
CANCEL_GRACE_S = 1.5  # a cancelled call's group: SIGKILL this long after SIGTERM, gone within 2 s
READ_CHUNK = 65_536
DRAIN_AFTER_EXIT_S = 1.0  # a background child may hold the pipe open after bash exits


class Launch(msgspec.Struct, frozen=True, kw_only=True):
    """What to run, where, and for how long."""

    command: str
    cwd: Path
    workspace: Path
    conversation_id: str
    timeout_s: float


class Exit(msgspec.Struct, frozen=True, kw_only=True):
    returncode: int  # negative: killed by that signal
    timed_out: bool


def environment(workspace: Path, conversation_id: str) -> dict[str, str]:
    """SPEC §6.2 without a tty or a software dir: the whole environment the command sees."""
    return {
        "PATH": PATH,
        "HOME": str(workspace / ".stellaclaw" / "home"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "TMPDIR": "/tmp",
        "STELLACLAW_WORKSPACE": str(workspace),
        "STELLACLAW_CONVERSATION": conversation_id,
    }


def limits_script(is_root: bool) -> str:
    """The wrapper: set the §6.3 limits (soft and hard), then exec the command in a fresh bash."""
    limits = f"-v {MEMORY_LIMIT_MIB * 1024} -f {FILE_SIZE_LIMIT_MIB * 1024} -n {OPEN_FILES_LIMIT}"
    if not is_root:
        limits += f" -u {PROCESS_LIMIT}"
    return f'ulimit {limits} && exec bash -c "$1"'


async def run(launch: Launch, sink: Callable[[bytes], None]) -> Exit:
    """Run the command, feeding its merged stdout and stderr to `sink` in arrival order."""
    read_fd, write_fd = os.pipe()
    transport, reader = await _read_end(read_fd)
    try:
        process = await _spawn(launch, write_fd)
    except BaseException:
        transport.close()
        raise
    finally:
        os.close(write_fd)  # the child holds its own copy; EOF comes when the group closes it
    reading = asyncio.create_task(_pump(reader, sink))
    try:
        timed_out = await _wait_or_end(process, launch.timeout_s)
        await asyncio.wait({reading}, timeout=DRAIN_AFTER_EXIT_S)
    finally:
        if process.returncode is None:  # cancelled mid-run: the group goes with the call
            await end_group(process)
        reading.cancel()
        transport.close()  # output of a background child that outlives the command is not read
    assert process.returncode is not None
    return Exit(returncode=process.returncode, timed_out=timed_out)


async def _spawn(launch: Launch, output_fd: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        limits_script(os.geteuid() == 0),
        "bash",
        launch.command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output_fd,
        stderr=output_fd,
        cwd=launch.cwd,
        env=environment(launch.workspace, launch.conversation_id),
        start_new_session=True,
    )


async def _read_end(read_fd: int) -> tuple[asyncio.ReadTransport, asyncio.StreamReader]:
    reader = asyncio.StreamReader()
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return transport, reader


async def _pump(reader: asyncio.StreamReader, sink: Callable[[bytes], None]) -> None:
    while chunk := await reader.read(READ_CHUNK):
        sink(chunk)


async def _wait_or_end(process: asyncio.subprocess.Process, timeout_s: float) -> bool:
    """Wait for the command; past `timeout_s` end its group. True when it timed out."""
    if await _exited_within(process.wait(), timeout_s):
        return False
    signal_group(process.pid, signal.SIGTERM)
    await _exited_within(process.wait(), KILL_AFTER_S)
    signal_group(process.pid, signal.SIGKILL)  # whatever in the group ignored SIGTERM
    await process.wait()
    return True


async def _exited_within(waiting: Awaitable[int], timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            await waiting
    except TimeoutError:
        return False
    return True


async def end_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the command's group, SIGKILL to what is left CANCEL_GRACE_S later (SPEC §3.6)."""
    signal_group(process.pid, signal.SIGTERM)
    exited = asyncio.ensure_future(process.wait())
    try:
        await asyncio.wait({exited}, timeout=CANCEL_GRACE_S)
    finally:
        signal_group(process.pid, signal.SIGKILL)  # also when this wait is itself cancelled


def signal_group(pid: int, signum: signal.Signals) -> None:
    """Signal the process group led by `pid` (the command's own session), if any is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
