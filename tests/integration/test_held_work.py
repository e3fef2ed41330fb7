"""`/status`'s running work through the real tools service (SPEC §12.4): a ProbePool with the
workspace lists its shell sessions and downloads with their labels, while they run."""

import time

import pytest

from services.tools.service import run
from shared import subjects
from shared.bus import encode
from shared.messages.contract import Workspace
from shared.messages.tools import PROBE_REPLY, HeldWork, ProbePool
from tests.integration.test_tools import CONFIG, call, output
from tests.kit import web_pages
from tests.kit.nats import TestBus
from tests.kit.services import make_runtime, running
from tests.kit.waiting import eventually_async
from tests.unit.tools.samples import run_tool

WORKSPACE = Workspace(pool="local", path="workspaces/tg_1")
COMMAND = "sleep 60 # a dev server, say"


@pytest.fixture
def runtime(workdir, nats_access):
    return make_runtime(CONFIG | {"tools": {"allow_private_network": True}}, workdir, nats_access)


@pytest.fixture
async def site():
    async with web_pages.serving() as served:
        yield served


async def held(bus: TestBus) -> list[HeldWork]:
    asked = encode(ProbePool(workspace=WORKSPACE))
    answer = await bus.nc.request(subjects.tool_probe("local"), asked, timeout=5)
    return PROBE_REPLY.decode(answer.data).held


async def test_the_probe_lists_the_workspaces_running_sessions_and_downloads(bus, runtime, site):
    url = site.url("/gated/1048576")  # its first chunk, then held until the gate opens
    before = time.time()
    async with running(runtime, run):
        shell = run_tool("shell", {"command": COMMAND, "wait_s": 0}, call="s")
        started = output(await call(bus, shell))
        download = {"url": url, "file_path": "big.iso", "wait_s": 0}
        fetching = output(await call(bus, run_tool("file_download_start", download, call="d")))
        both = await held(bus)
        await call(bus, run_tool("shell_close", {"session": "sh1"}, call="c"))
        after_close = await held(bus)
        site.gate.set()

        async def nothing_held() -> bool:
            return await held(bus) == []

        await eventually_async(nothing_held, what="the finished download is no longer listed")
    assert (started["session"], fetching["download_id"]) == ("sh1", "dl1")
    assert [(work.name, work.label) for work in both] == [("sh1", COMMAND), ("dl1", url)]
    assert all(before <= work.started_at <= time.time() for work in both)
    assert after_close == [both[1]]


async def test_a_workspace_not_on_the_host_holds_nothing(bus, runtime):
    async with running(runtime, run):
        await call(bus, run_tool("shell", {"command": "true"}))  # the runner is up
        elsewhere = Workspace(pool="local", path="workspaces/tg_never")
        asked = encode(ProbePool(workspace=elsewhere))
        answer = await bus.nc.request(subjects.tool_probe("local"), asked, timeout=5)
    probed = PROBE_REPLY.decode(answer.data)
    assert probed.held == []
    assert probed.runner_id.startswith("r")
