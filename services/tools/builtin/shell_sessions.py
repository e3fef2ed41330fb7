"""Commands that outlive their call (SPEC §5.2): a running command becomes shell session `sh<n>`,
held by this runner process, polled, written to and closed by later calls.

The command runs in its own task, so the call that started it may return (after `wait_s`, or cut
short by a follow-up) while it goes on. A call cancelled while its own command runs (`/cancel`)
ends that command; sessions from earlier calls are ended only by `shell_close`, their timeout,
`/new` or their runner stopping.
"""

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

from services.tools.builtin.shell_output import Output
from services.tools.sandbox import launch as commands

MAX_RUNNING = 16  # per conversation
HELD_KIND = "shell"  # a conversation's `Sessions` in `RunnerContext.held`
CLOSE_GRACE_S = 5.0  # `term`: SIGKILL this long after SIGTERM


class Controls(Protocol):
    """A running command from outside, local (`launch.Controls`) or on a remote."""

    fd: int  # >= 0 while the command's terminal takes input

    def signal(self, signum: signal.Signals) -> None: ...

    async def write(self, data: bytes) -> None: ...


Start = Callable[[Callable[[bytes], None], Controls], Awaitable[commands.Exit]]


def local(launch: commands.Launch) -> tuple[Start, Controls]:
    """How a command runs on this host (the sandbox seam)."""

    async def start(sink: Callable[[bytes], None], controls: Controls) -> commands.Exit:
        assert isinstance(controls, commands.Controls)
        return await commands.run(launch, sink, controls)

    return start, commands.Controls()


class ShellSession:
    """One running command and its unread output."""

    def __init__(self, command: str, start: tuple[Start, Controls], output: Output) -> None:
        self.command = command
        self.output = output
        run, self.controls = start
        self.name = ""  # `sh<n>` once the command outlived its call
        self.started = asyncio.get_running_loop().time()
        self.task = asyncio.ensure_future(run(output.feed, self.controls))

    @property
    def exit(self) -> commands.Exit | None:
        """How the command ended, once its task is done (a failure to start raises here)."""
        return self.task.result() if self.task.done() else None

    @property
    def running_s(self) -> float:
        return round(asyncio.get_running_loop().time() - self.started, 3)

    async def wait(self, wait_s: float, cut_short: asyncio.Event) -> bool:
        """Wait up to `wait_s` for the command to end, or until `cut_short` is set; whether it
        ended. Cancelling this wait leaves the command running."""
        cutting = asyncio.ensure_future(cut_short.wait())
        try:
            await asyncio.wait({self.task, cutting}, timeout=wait_s, return_when="FIRST_COMPLETED")
        finally:
            cutting.cancel()
        if self.task.done():
            await self.output.close()
            return True
        return False

    async def end(self) -> None:
        """Kill the command's processes now and wait for the task."""
        self.task.cancel()
        await asyncio.wait({self.task})
        with contextlib.suppress(asyncio.CancelledError, Exception):
            self.task.result()
        await self.output.close()

    async def close(self, how: signal.Signals) -> None:
        """Send `how` (SIGTERM escalates to SIGKILL after CLOSE_GRACE_S) and wait for the end."""
        self.controls.signal(how)
        if how == signal.SIGTERM:
            await asyncio.wait({self.task}, timeout=CLOSE_GRACE_S)
            self.controls.signal(signal.SIGKILL)
        if how == signal.SIGINT:
            await asyncio.wait({self.task}, timeout=CLOSE_GRACE_S)
            if not self.task.done():
                return
        await asyncio.wait({self.task})
        await self.output.close()


class Sessions:
    """A conversation's shell sessions in this runner process."""

    def __init__(self) -> None:
        self.running: dict[str, ShellSession] = {}

    def names(self) -> str:
        return ", ".join(self.running) or "none"

    async def end_all(self) -> None:
        sessions, self.running = list(self.running.values()), {}
        await asyncio.gather(*(session.end() for session in sessions))
