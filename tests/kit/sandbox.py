"""A tool runner's sandbox facilities, probed for real on this host, and a skip where they lack."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from services.tools.sandbox import cgroups, host
from services.tools.sandbox.host import SandboxHost
from shared.config import SandboxConfig
from shared.ids import new_id
from shared.sandbox import SandboxMode

MODES: tuple[SandboxMode, ...] = ("subprocess", "bubblewrap")  # the modes that confine


@asynccontextmanager
async def probed(config: SandboxConfig | None = None) -> AsyncIterator[SandboxHost]:
    """What `stellaclaw run tools` finds here at start; its cgroups removed afterwards."""
    found = await host.start(config or SandboxConfig(), new_id("rtest"), ("kit-secret-value",))
    try:
        yield found
    finally:
        cgroups.remove_base(found.cgroups)


def skip_unless_usable(found: SandboxHost, mode: SandboxMode) -> None:
    """Skip, saying why, a test of `mode` on a host that cannot run it."""
    if mode == "bubblewrap" and found.support.bubblewrap_error:
        pytest.skip(f"bubblewrap cannot run here: {found.support.bubblewrap_error}")


def skip_without_pids_cgroup(found: SandboxHost) -> None:
    if not found.cgroups.version:
        pytest.skip(f"no pids cgroup here: {found.cgroups.reason}")
