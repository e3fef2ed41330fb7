"""The one seam every local command goes through: `run(launch, sink)` in the call's mode.

disabled    `bash -c` in its own process group, the service's environment minus secrets, no limits
subprocess  its own session, the cleared §6.2 environment, the §6.3 limits, its own pids cgroup
bubblewrap  the same limits and cgroup around `bwrap` (§6.4), its own PID namespace

The limits are set by `ulimit` in a small shell wrapper that joins the call's cgroup and then
execs the command, so no Python runs between fork and exec (the event loop may have threads)
and every descendant is in the group. A call's processes never outlive it: when the command
ends, times out or is cancelled, every pid left in its group is killed (its process group where
the host has no pids cgroup), `setsid` and `&` children included.
"""

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import struct
import subprocess
import termios
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from services.tools.results import ToolError
from services.tools.sandbox import bwrap, environment
from services.tools.sandbox.cgroups import CallGroup
from services.tools.sandbox.host import SandboxHost
from shared.sandbox import SandboxMode

TTY_COLUMNS, TTY_ROWS = 100, 30
log = logging.getLogger(__name__)
KILL_AFTER_S = 5.0  # a timed-out command: SIGTERM, then SIGKILL this long after
CANCEL_GRACE_S = 1.5  # a cancelled call: SIGKILL this long after SIGTERM, gone within 2 s
READ_CHUNK = 65_536
MIB = 1024 * 1024
DRAIN_S = 1.0  # the output still in the pipe when the command's processes are gone
WRAPPER = '[ -z "$1" ] || echo $$ > "$1" || exit 125; {limits} || exit 125; shift; exec "$@"'
# The wrapper's shell: dash starts in half bash's time. Its `ulimit` takes one limit at a time
# (both shells then set the soft and the hard limit), counts file sizes in 512-byte blocks (bash:
# 1024) and calls the process limit -p (bash: -u).
WRAPPER_SHELL, NPROC_FLAG, FSIZE_BLOCK = (
    ("dash", "-p", 512) if shutil.which("dash") else ("bash", "-u", 1024)
)


class Launch(msgspec.Struct, frozen=True, kw_only=True):
    """What to run, where, in which mode, and for how long."""

    command: str
    cwd: Path
    workspace: Path
    shared: Path
    conversation_id: str
    timeout_s: float
    mode: SandboxMode
    host: SandboxHost
    tty: bool = False  # a pseudo-terminal (TTY_COLUMNS x TTY_ROWS) as stdin, stdout and stderr


class Controls:
    """A running command from outside: its terminal's input side (with `tty`) and its signals."""

    def __init__(self) -> None:
        self.fd = -1
        self.tree: Tree | None = None

    def signal(self, signum: signal.Signals) -> None:
        if self.tree is not None:
            self.tree.signal(signum)

    async def write(self, data: bytes) -> None:
        """Write all of `data`, waiting (never blocking the loop) while the terminal is full."""
        if self.fd < 0:
            raise ToolError("failed", "the command's terminal is closed")
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(self.fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_writer(self.fd)


class Exit(msgspec.Struct, frozen=True, kw_only=True):
    returncode: int  # negative: killed by that signal
    timed_out: bool


class Tree:
    """The processes of one call: its process group, and its cgroup where the host has one.

    Both are signalled: the cgroup catches what left the group with `setsid`, and the group
    catches the command before it is in its cgroup (on a loaded host the wrapper's write to
    `cgroup.procs` was seen to wait seconds in the kernel; a signal sent to the cgroup alone
    then missed the command)."""

    def __init__(self, group: CallGroup | None) -> None:
        self.group = group
        self.pid = 0

    def signal(self, signum: signal.Signals) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)
        if self.group is not None:
            self.group.signal(signum)

    async def end(self) -> None:
        self.signal(signal.SIGKILL)
        if self.group is not None:
            await self.group.end()


def command_line(launch: Launch, procs: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment to spawn for the call's mode."""
    host = launch.host
    if launch.mode == "disabled":
        return ["bash", "-c", launch.command], environment.inherited(host.secrets)
    config = host.config
    limits = [
        f"-v {config.memory_limit_mb * 1024}",
        f"-f {config.file_size_limit_mb * MIB // FSIZE_BLOCK}",
    ]
    limits.append("-n 4096")
    if not host.cgroups.version and not host.is_root:
        limits.append(f"{NPROC_FLAG} {config.pids_limit}")  # the coarse fallback (SPEC §6.3)
    script = WRAPPER.format(limits=" && ".join(f"ulimit {limit}" for limit in limits))
    wrapper = [WRAPPER_SHELL, "-c", script, "stellaclaw-limits", procs]
    command = ["bash", "-c", launch.command]
    if launch.mode == "subprocess":
        software = str(host.software) if host.software else None
        env = environment.cleared(config, launch.workspace, launch.conversation_id, software)
        return [*wrapper, *command], env
    software = config.software_mount_path if host.software else None
    env = environment.cleared(config, launch.workspace, launch.conversation_id, software)
    binds = bwrap.Binds(
        workspace=launch.workspace, shared=launch.shared, cwd=launch.cwd, software=host.software
    )
    return [*wrapper, *bwrap.argv(config, binds, env, command)], {"PATH": environment.BASE_PATH}


async def run(
    launch: Launch, sink: Callable[[bytes], None], controls: Controls | None = None
) -> Exit:
    """Run the command, feeding its merged stdout and stderr to `sink` in arrival order; with
    `launch.tty`, on a pseudo-terminal; `controls` reaches it while it runs."""
    host = launch.host
    if launch.mode == "bubblewrap" and host.support.bubblewrap_error:
        reason = host.support.bubblewrap_error
        raise ToolError("unavailable", f"bubblewrap cannot run on this host: {reason}")
    uses_group = launch.mode != "disabled" and host.cgroups.version > 0
    tree = Tree(CallGroup(host.cgroups, host.config.pids_limit) if uses_group else None)
    argv, env = command_line(launch, str(tree.group.procs) if tree.group else "")
    read_fd, write_fd = _pty() if launch.tty else os.pipe()
    reading = Reader(read_fd, sink)
    try:
        process = _spawn(argv, env, launch.cwd, write_fd, is_tty=launch.tty)
        tree.pid = process.pid
    except BaseException:
        reading.close()
        await tree.end()
        raise
    finally:
        os.close(write_fd)  # the child holds its own copy; EOF comes when its processes end
    if controls is not None:
        controls.tree = tree
        controls.fd = read_fd if launch.tty else -1
    try:
        timed_out = await _wait_or_end(process, tree, launch.timeout_s)
    finally:
        if process.returncode is None:  # cancelled mid-run: the tree goes with the call
            await _end_cancelled(process, tree)
        await tree.end()  # whatever the command left running
        await asyncio.wait({reading.done}, timeout=DRAIN_S)
        if controls is not None:
            controls.fd, controls.tree = -1, None
        reading.close()
    assert process.returncode is not None
    return Exit(returncode=process.returncode, timed_out=timed_out)


class Child:
    """A spawned command, awaited through a pidfd. `subprocess.Popen` forks with vfork, which
    does not copy this process's page tables (libuv's fork does: about 2 ms per call here)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._exited = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._pidfd = os.pidfd_open(popen.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self.popen.wait()  # it has exited: this reaps it at once
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.popen.returncode is not None
        return self.popen.returncode


def _pty() -> tuple[int, int]:
    """A pseudo-terminal (TTY_COLUMNS x TTY_ROWS): our side, the command's side."""
    ours, theirs = os.openpty()
    size = struct.pack("HHHH", TTY_ROWS, TTY_COLUMNS, 0, 0)
    fcntl.ioctl(theirs, termios.TIOCSWINSZ, size)
    os.set_inheritable(ours, False)
    return ours, theirs


def _spawn(
    argv: list[str], env: dict[str, str], cwd: Path, output_fd: int, *, is_tty: bool
) -> Child:
    popen = subprocess.Popen(
        argv,
        stdin=output_fd if is_tty else subprocess.DEVNULL,
        stdout=output_fd,
        stderr=output_fd,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    return Child(popen)


class Reader:
    """The command's output pipe (or terminal), read as it becomes readable. This module owns the
    fd and closes it exactly once: a transport's fd handed to uvloop was seen closed twice under
    load, the second close hitting a number another thread had just opened."""

    def __init__(self, fd: int, sink: Callable[[bytes], None]) -> None:
        self.fd = fd
        self.sink = sink
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:  # a terminal whose last writer closed reads EIO: its end
            if exc.errno != errno.EIO:
                log.warning("reading a command's output failed: %r", exc)
            chunk = b""
        if chunk:
            self.sink(chunk)
            return
        self.loop.remove_reader(self.fd)
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        if not self.done.done():
            self.done.set_result(None)


async def _wait_or_end(process: Child, tree: Tree, timeout_s: float) -> bool:
    """Wait for the command; past `timeout_s` end its tree. True when it timed out."""
    if await _exited_within(process.wait(), timeout_s):
        return False
    tree.signal(signal.SIGTERM)
    await _exited_within(process.wait(), KILL_AFTER_S)
    tree.signal(signal.SIGKILL)  # whatever ignored SIGTERM
    await process.wait()
    return True


async def _exited_within(waiting: Awaitable[int], timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            await waiting
    except TimeoutError:
        return False
    return True


async def _end_cancelled(process: Child, tree: Tree) -> None:
    """SIGTERM to the tree, SIGKILL to what is left CANCEL_GRACE_S later (SPEC §3.6)."""
    tree.signal(signal.SIGTERM)
    exited = asyncio.ensure_future(process.wait())
    try:
        await asyncio.wait({exited}, timeout=CANCEL_GRACE_S)
    finally:
        tree.signal(signal.SIGKILL)  # also when this wait is itself cancelled
