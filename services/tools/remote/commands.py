"""Commands on a remote (SPEC §6.6): the remote counterpart of `sandbox.launch.run`, with the same
shape (`run(..., launch, sink, controls) -> Exit`), so the shell tool can use either.

A command runs as `cd <dir> && VAR=value exec timeout -k 5 <timeout_s> bash -c '<command>'`,
after a first line that prints the remote shell's pid. `exec` keeps that pid, and `timeout`
makes itself the leader of its own process group, so the number names the command's process
group; it is stripped from the output. Signals (`shell_close`, a cancelled call, the client's
own deadline) reach that group as a `kill` on a second channel: closing a channel without a
terminal does not end a remote process, and servers differ in how they take signal requests.
A command whose connection drops keeps running on the remote until its `timeout` ends it.
"""

import asyncio
import contextlib
import logging
import re
import shlex
import signal
from collections.abc import Callable

import msgspec

from services.tools.remote import connections
from services.tools.remote.connections import Remotes, SshChannel
from services.tools.results import ToolError
from services.tools.sandbox.launch import Exit

log = logging.getLogger(__name__)
KILL_AFTER_S = 5  # the remote `timeout -k`: SIGKILL this long after SIGTERM
GIVE_UP_AFTER_S = 10.0  # the client gives up at timeout_s + this, then kills the group itself
CANCEL_GRACE_S = 1.5  # a cancelled call: SIGKILL this long after SIGTERM (as locally)
GROUP_WAIT_S = 5.0  # how long an ending waits for the group line of a command just started
DRAIN_S = 1.0  # output still in flight after the exit status
MARKER = b"stellaclaw-pgid "
MAX_HEAD_BYTES = 65_536  # output held back while looking for the group line
TIMED_OUT_STATUSES = {124, 128 + signal.SIGKILL, -signal.SIGKILL}  # see exit_of
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RemoteLaunch(msgspec.Struct, frozen=True, kw_only=True):
    """What to run on the remote, where, with which variables, and for how long."""

    command: str
    cwd: str  # a directory on the remote
    timeout_s: float
    env: dict[str, str] = msgspec.field(default_factory=dict)  # set inline before the command
    tty: bool = False  # a pseudo-terminal of 100x30; stdin stays open only with one


def command_line(launch: RemoteLaunch) -> str:
    """The remote shell command: group line, `cd`, variables, `exec timeout ... bash -c`."""
    for key in launch.env:
        if not VARIABLE.match(key):
            raise ToolError("invalid_arguments", f"not an environment variable name: {key!r}")
    assignments = "".join(f"{key}={shlex.quote(value)} " for key, value in launch.env.items())
    seconds = f"{max(launch.timeout_s, 0.001):.3f}".rstrip("0").rstrip(".")  # never 0: no limit
    timed = f"timeout -k {KILL_AFTER_S} {seconds} bash -c {shlex.quote(launch.command)}"
    marker = MARKER.decode().strip()
    return f"echo {marker} $$; cd {shlex.quote(launch.cwd)} && {assignments}exec {timed}"


class Running:
    """One command's channel events (a `connections.Receiver`): its output less the group line,
    its process group, its exit status and its end."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        self.head = b""  # output held back until the group line has passed
        self.group = 0
        self.group_known = asyncio.Event()  # also set when the channel closed without one
        self.returncode: int | None = None
        self.finished = asyncio.Event()  # the exit status came, or the channel closed
        self.ended = asyncio.Event()  # the channel closed
        self.dropped: str | None = None  # why the connection dropped, if it did

    def received(self, data: bytes) -> None:
        if self.group_known.is_set():
            self.sink(data)
            return
        self.head += data
        start = self.head.find(MARKER)
        end = self.head.find(b"\n", start) if start >= 0 else -1
        if end < 0:
            if len(self.head) > MAX_HEAD_BYTES:  # no group line coming: never hold output back
                self._release_head()
            return
        number = self.head[start + len(MARKER) : end].strip()
        self.group = int(number) if number.isdigit() else 0
        before, after = self.head[:start], self.head[end + 1 :]
        self.head = b""
        self.group_known.set()
        for part in (before, after):
            if part:
                self.sink(part)

    def exited(self, returncode: int) -> None:
        self.returncode = returncode
        self.finished.set()

    def closed(self, reason: str | None) -> None:
        self._release_head()
        self.dropped = reason
        self.finished.set()
        self.ended.set()

    def _release_head(self) -> None:
        head, self.head = self.head, b""
        self.group_known.set()
        if head:
            self.sink(head)


class Group:
    """The remote process group of one command, signalled over a second channel."""

    def __init__(self, remotes: Remotes, name: str, running: Running) -> None:
        self.remotes = remotes
        self.name = name
        self.running = running

    async def signal(self, signum: signal.Signals) -> None:
        """Send `signum` to the group, or to its leader when it has not made the group yet
        (never to both: a leader that traps the signal would run its trap twice)."""
        group = await self.number()
        if group:
            how = signum.name.removeprefix("SIG")
            await self._run(
                f"kill -{how} -{group} 2>/dev/null || kill -{how} {group} 2>/dev/null; exit 0"
            )

    async def end(self) -> None:
        """SIGTERM to the group, SIGKILL to what is left CANCEL_GRACE_S later."""
        group = await self.number()
        if not group:
            return
        polls = round(CANCEL_GRACE_S / 0.1)
        await self._run(
            f"g={group}; kill -TERM -$g 2>/dev/null || kill -TERM $g 2>/dev/null; n=0;"
            f" while kill -0 -$g 2>/dev/null && [ $n -lt {polls} ]; do sleep 0.1; n=$((n+1)); done;"
            " kill -KILL -$g $g 2>/dev/null; exit 0"
        )

    async def number(self) -> int:
        """The group's number once its line came (waiting up to GROUP_WAIT_S); 0 if unknown."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GROUP_WAIT_S):
                await self.running.group_known.wait()
        return self.running.group if self.running.group > 1 else 0

    async def _run(self, script: str) -> None:
        try:
            async with self.remotes.channel(self.name) as conn:
                await connections.run_brief(conn, self.name, script)
        except ToolError as exc:  # the command's own channel reports the failure to the caller
            log.warning("signalling a command on remote %s failed: %s", self.name, exc)


class RemoteControls:
    """A running remote command from outside: its terminal's input side (with `tty`) and
    signals to its process group, as `sandbox.launch.Controls` does for a local one."""

    def __init__(self) -> None:
        self.fd = -1  # >= 0 while the command's terminal takes input (only its sign is used)
        self.group: Group | None = None
        self.channel: SshChannel | None = None
        self.sending: set[asyncio.Task[None]] = set()  # signals on their way, awaited by run()

    def signal(self, signum: signal.Signals) -> None:
        if self.group is not None:
            task = asyncio.ensure_future(self.group.signal(signum))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    async def write(self, data: bytes) -> None:
        if self.channel is None or self.fd < 0:
            raise ToolError("failed", "the command's terminal is closed")
        try:
            self.channel.write(data)
        except (OSError, RuntimeError) as exc:  # the channel closed in the meantime
            raise ToolError("failed", "the command's terminal is closed") from exc

    def attach(self, group: Group, channel: SshChannel, *, tty: bool) -> None:
        self.group = group
        self.channel = channel if tty else None
        self.fd = 0 if tty else -1

    async def detach(self) -> None:
        self.fd, self.group, self.channel = -1, None, None
        if self.sending:
            await asyncio.wait(set(self.sending))


async def run(
    remotes: Remotes,
    name: str,
    launch: RemoteLaunch,
    sink: Callable[[bytes], None],
    controls: RemoteControls | None = None,
) -> Exit:
    """Run the command on remote `name`, feeding its merged stdout and stderr to `sink` in
    arrival order; with `launch.tty` on a pseudo-terminal; `controls` reaches it while it runs.
    A dropped connection is ToolError `remote_unreachable`."""
    running = Running(sink)
    group = Group(remotes, name, running)
    controls = controls if controls is not None else RemoteControls()
    async with remotes.channel(name) as conn:
        started = asyncio.get_running_loop().time()
        channel = await _start(conn, launch, group)
        controls.attach(group, channel, tty=launch.tty)
        try:
            has_exited = await _exited_within(running, launch.timeout_s + GIVE_UP_AFTER_S)
        finally:
            await controls.detach()
            if not running.ended.is_set():  # cancelled, given up, or left holding its output
                await _end(channel, group)
        duration_s = asyncio.get_running_loop().time() - started
    if not has_exited:
        return Exit(returncode=-signal.SIGKILL, timed_out=True)
    if running.returncode is None:
        reason = running.dropped or "the remote closed the command's channel without an exit status"
        raise connections.unreachable(name, reason)
    return exit_of(running.returncode, duration_s, launch.timeout_s)


async def _start(conn: connections.Connection, launch: RemoteLaunch, group: Group) -> SshChannel:
    """Open the command's channel; when cancelled meanwhile, end the command once it started."""
    command = command_line(launch)
    starting = asyncio.ensure_future(
        connections.start(conn, group.name, command, group.running, tty=launch.tty)
    )
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        await asyncio.wait({starting})
        if not starting.cancelled() and starting.exception() is None:
            await _end(starting.result(), group)
        raise


async def _exited_within(running: Running, timeout_s: float) -> bool:
    """Wait for the exit status, then briefly for the rest of the output; False past timeout_s."""
    try:
        async with asyncio.timeout(timeout_s):
            await running.finished.wait()
    except TimeoutError:
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_S):
            await running.ended.wait()
    return True


async def _end(channel: SshChannel, group: Group) -> None:
    """End the command's process group from a second channel, then close its channel: closed
    first, the group line could be lost, and some servers drop the whole connection when a
    channel closes under a command that is still writing."""
    try:
        await group.end()
    finally:
        channel.close()


def exit_of(returncode: int, duration_s: float, timeout_s: float) -> Exit:
    """How a finished command ended. Past `timeout_s`, `timeout`'s own statuses mean it timed
    out: 124 (SIGTERM ended it), and after `-k` 137 or a death by SIGKILL (`timeout` kills its
    whole group, itself included, so an exec'd `timeout` reports the signal)."""
    timed_out = returncode in TIMED_OUT_STATUSES and duration_s >= timeout_s
    return Exit(returncode=returncode, timed_out=timed_out)
