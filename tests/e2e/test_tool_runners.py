"""Several `tools` processes on one pool (DESIGN §6), under a real `stellaclaw up`.

Both runners take calls from the pool's durable; a call on a shell session another runner holds
is forwarded to it over `sc.tool.direct.<runner_id>`; a runner SIGKILLed mid-call is noticed by
the session's pings within seconds, and its side-effecting call is reported, never run again
(SPEC §3.9).
"""

import contextlib
import itertools
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest

from services.session import runner_watch
from shared import layout, subjects
from shared.ids import ConversationId, SessionId, ToolCallId
from shared.messages.contract import Workspace
from shared.messages.tools import (
    TOOL_EVENT,
    RunTool,
    ToolEvent,
    ToolFailed,
    ToolFinished,
    ToolStarted,
    ToolSucceeded,
)
from tests.kit import stack as sc_stack
from tests.kit.llm_api import reply, tool_call
from tests.kit.nats import TestBus
from tests.kit.waiting import eventually

pytestmark = pytest.mark.e2e
USER = 6801
CONVERSATION = ConversationId("e2e_runners")
SESSION = SessionId("e2e_runners_fg1")
OWNER = "e2e-replica/tools/1"
CALLS = 16
MAX_POLLS = 40
TOOL_RUNNERS = subjects.durable("tools", layout.LOCAL_POOL)
REPORT_S = 15.0  # from the SIGKILL to the model's next request: a ping (every 5 s) finds it gone
ENDED = "shell session sh1 ended: its runner restarted"


@asynccontextmanager
async def up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[sc_stack.Fakes, sc_stack.Stack, TestBus]]:
    """The fakes, a ready `stellaclaw up` (logs in `<tmp_path>/workdir/logs/`) and an `admin`
    client that publishes RunTools as a session would."""
    async with (
        sc_stack.fakes(tmp_path, monkeypatch.setenv, [USER]) as world,
        sc_stack.stack(world.config, world.workdir) as running,
    ):
        nc = await running.wait_ready(sc_stack.SERVICES)
        yield world, running, TestBus(nc, running.bus_url)


@asynccontextmanager
async def two_runners(world: sc_stack.Fakes, running: sc_stack.Stack) -> AsyncIterator[None]:
    """The launcher's `tools` process and a replica of it, both serving the pool `local`."""
    async with sc_stack.replica(running, "tools", world.config, OWNER):
        await running.wait_instances("tools", 2)
        yield


class Caller:
    """Sends RunTools for one session and reads every event on its result subjects."""

    def __init__(self, bus: TestBus) -> None:
        self.bus = bus
        self.numbers = itertools.count(1)
        self.events: list[ToolEvent] = []

    async def send(self, tool: str, arguments: dict[str, object]) -> ToolCallId:
        await self.bus.watch(subjects.tool_results(SESSION))
        call_id = ToolCallId(f"c{next(self.numbers)}")
        request = RunTool(
            session_id=SESSION,
            conversation_id=CONVERSATION,
            call_id=call_id,
            tool=tool,
            arguments=msgspec.Raw(msgspec.json.encode(arguments)),
            workspace=Workspace(pool=layout.LOCAL_POOL, path=f"workspaces/{CONVERSATION}"),
            timeout_s=60.0,
        )
        await self.bus.publish(
            subjects.tool_request(layout.LOCAL_POOL, SESSION),
            request,
            msg_id=subjects.tool_request_msg_id(SESSION, call_id),
        )
        return call_id

    async def read(self, timeout_s: float = 10.0) -> None:
        """Take the next event on the session's result subjects."""
        event = await self.bus.next(subjects.tool_results(SESSION), TOOL_EVENT, timeout_s)
        self.events.append(event)

    def finished(self, call_id: ToolCallId | None = None) -> list[ToolFinished]:
        return [
            event
            for event in self.events
            if isinstance(event, ToolFinished) and call_id in (None, event.call_id)
        ]

    async def finish(self, tool: str, arguments: dict[str, object]) -> ToolFinished:
        """Send one call and wait for its ToolFinished."""
        call_id = await self.send(tool, arguments)
        while not self.finished(call_id):
            await self.read()
        [done] = self.finished(call_id)
        return done


def end_leftovers(workspace: Path) -> None:
    """SIGKILL what still runs in the workspace: a command a SIGKILLed runner had just spawned
    (its wrapper not yet replaced by bwrap, or in `subprocess` mode) outlives the runner."""
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        with contextlib.suppress(OSError):
            if Path(os.readlink(cwd)) == workspace.resolve():
                os.kill(int(cwd.parent.name), signal.SIGKILL)


def output(finished: ToolFinished) -> dict[str, object]:
    assert isinstance(finished.result, ToolSucceeded), finished.result
    decoded = msgspec.json.decode(finished.result.output)
    assert isinstance(decoded, dict)
    return decoded


@pytest.mark.timeout(90)
async def test_two_runner_processes_on_one_pool_both_take_work(tmp_path, monkeypatch):
    async with up(tmp_path, monkeypatch) as (world, running, bus), two_runners(world, running):
        caller = Caller(bus)
        sent = [await caller.send("shell", {"command": "sleep 0.3; echo ok"}) for _ in range(CALLS)]
        while len(caller.finished()) < CALLS:
            await caller.read(timeout_s=20)
        await running.wait_drained(subjects.TOOL_STREAM, TOOL_RUNNERS)
        # Each ToolFinished is published before its RunTool is acked: a duplicate is here now.
        with contextlib.suppress(TimeoutError):
            await caller.read(timeout_s=0.5)
    finished = caller.finished()
    assert sorted(f.call_id for f in finished) == sorted(sent)  # each call finished exactly once
    answers = [(output(f)["exit_code"], output(f)["output"]) for f in finished]
    assert answers == [(0, "ok\n")] * CALLS
    assert len({f.runner_id for f in finished}) == 2, [f.runner_id for f in finished]


@pytest.mark.timeout(90)
async def test_a_shell_session_held_by_one_runner_is_polled_through_the_other(
    tmp_path, monkeypatch
):
    async with up(tmp_path, monkeypatch) as (world, running, bus), two_runners(world, running):
        caller = Caller(bus)
        started = await caller.finish("shell", {"command": "sleep 30; echo done", "wait_s": 0})
        holder = started.runner_id
        polls: list[ToolFinished] = []
        while not any(p.runner_id != holder for p in polls) and len(polls) < MAX_POLLS:
            polls.append(await caller.finish("shell", {"session": "sh1", "wait_s": 0}))
        closed = await caller.finish("shell_close", {"session": "sh1"})
    assert (output(started)["running"], output(started)["session"]) == (True, "sh1")
    answers = [(output(p)["running"], output(p)["session"]) for p in polls]
    assert answers == [(True, "sh1")] * len(polls)
    assert any(p.runner_id != holder for p in polls), f"{len(polls)} polls, all taken by {holder}"
    assert (output(closed)["session"], output(closed)["closed"]) == ("sh1", True)


@pytest.mark.timeout(90)
async def test_a_sigkilled_runners_side_effecting_call_is_reported_within_15_s_not_re_run(
    tmp_path, monkeypatch
):
    async with up(tmp_path, monkeypatch) as (world, running, bus):
        workspace = world.workdir / "workspaces" / f"tg_{USER}"
        ran = workspace / "ran.log"
        world.llm.script(
            tool_call("shell", {"command": "echo ran >> ran.log; sleep 298.5"}),
            reply("It stopped; I will not run it again."),
        )
        await bus.watch(subjects.TOOL_RESULTS_ALL)
        world.telegram.user_says(USER, "log a line, then wait")
        announced = await bus.next(subjects.TOOL_RESULTS_ALL, TOOL_EVENT, timeout_s=30)
        assert isinstance(announced, ToolStarted), announced
        await eventually(lambda: ran.exists() and ran.read_text(), 10, what="the command to run")
        running.kill("tools")
        await eventually(lambda: len(world.llm.requests) >= 2, REPORT_S, what="the report")
        await eventually(lambda: world.telegram.transcript(USER), 30, what="the answer in the chat")
        end_leftovers(workspace)
    [result] = world.llm.requests[1].tool_messages
    assert msgspec.json.decode(result.text) == {
        "error": runner_watch.LOST,
        "error_kind": "interrupted_by_restart",
    }
    [asked] = [m.tool_calls for m in world.llm.requests[1].messages if m.tool_calls]
    assert result.tool_call_id == asked[0].call_id
    assert world.telegram.transcript(USER) == ["It stopped; I will not run it again."]
    assert ran.read_text() == "ran\n"


@pytest.mark.timeout(90)
async def test_a_shell_session_of_a_sigkilled_runner_has_ended_for_the_restarted_one(
    tmp_path, monkeypatch
):
    async with up(tmp_path, monkeypatch) as (world, running, bus):
        caller = Caller(bus)
        started = await caller.finish("shell", {"command": "sleep 30", "wait_s": 0})
        killed = running.kill("tools")
        await running.wait_service("tools", not_pid=killed)
        poll = await caller.finish("shell", {"session": "sh1", "wait_s": 0})
        end_leftovers(world.workdir / "workspaces" / CONVERSATION)
    assert output(started)["session"] == "sh1"
    assert poll.runner_id != started.runner_id
    assert poll.result == ToolFailed(error_kind="not_found", error=ENDED)
