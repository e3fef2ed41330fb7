"""How the launcher starts a child: it owns it for life (DESIGN §11).

Each child runs in its own session (a terminal's Ctrl-C reaches only the launcher, which stops the
children in order) and gets `PR_SET_PDEATHSIG(SIGKILL)`, set in the child before it execs, so
nothing outlives a SIGKILLed launcher. uvloop refuses `process_group=`; `start_new_session` does
the same and more. Every child also inherits the launcher's lock on the workdir (`pass_fds`), so
while any of them still runs, a second `stellaclaw up` cannot start on the same store.
"""

import asyncio
import ctypes
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def dies_with_launcher() -> Callable[[], None]:
    """What the child runs between fork and exec: die with the launcher, even one gone already."""
    launcher = os.getpid()
    prctl = _LIBC.prctl

    def arrange() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != launcher:  # the launcher died before the signal was armed
            os._exit(1)

    return arrange


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    lock_fd: int,
    output: IO[bytes] | int,
    cwd: Path | None = None,
) -> asyncio.subprocess.Process:
    """Start `argv` as a child the launcher owns (stdout and stderr to `output`)."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        preexec_fn=dies_with_launcher(),
        pass_fds=(lock_fd,),
    )


async def terminate(process: asyncio.subprocess.Process, grace_s: float) -> bool:
    """SIGTERM, then SIGKILL after `grace_s`; True when it stopped by itself."""
    if process.returncode is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace_s):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        return False
    return True
