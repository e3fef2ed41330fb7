"""State that outlives a call, through the real tools service: shell sessions cut short by a
follow-up, and calls on a session another runner holds (forwarded) or held by a runner that is
gone (DESIGN §6)."""

import msgspec
import pytest

from services.tools.service import run
from shared import subjects
from shared.bus import encode
from shared.ids import ConversationId
from shared.messages.tools import (
    CALL_CANCELLED,
    TOOL_EVENT,
    CancelCall,
    EndWork,
    ToolFailed,
    ToolStarted,
)
from tests.integration.test_tools import CONFIG, call, finished_on, output
from tests.kit.services import make_runtime, running
from tests.kit.stack import is_gone
from tests.kit.waiting import eventually
from tests.unit.tools.samples import run_tool


@pytest.fixture
def runtime(workdir, nats_access):
    return make_runtime(CONFIG, workdir, nats_access)


async def test_a_follow_up_cuts_a_shell_wait_short_and_the_command_runs_on(bus, runtime):
    request = run_tool("shell", {"command": "sleep 60", "wait_s": 300}, call="long")
    result_subject = subjects.tool_result(request.session_id, request.call_id)
    await bus.watch(result_subject)
    async with running(runtime, run):
        await bus.publish(subjects.tool_request("local", request.session_id), request)
        assert isinstance(await bus.next(result_subject, TOOL_EVENT, 10), ToolStarted)
        cut = CancelCall(session_id=request.session_id, call_id=request.call_id, wait_only=True)
        reply = await bus.nc.request(
            subjects.tool_cancel(request.session_id, request.call_id), encode(cut), timeout=5
        )
        returned = output(await finished_on(bus, result_subject))
        polled = output(
            await call(bus, run_tool("shell", {"session": "sh1", "wait_s": 0}, call="p"))
        )
        closed = output(await call(bus, run_tool("shell_close", {"session": "sh1"}, call="c")))
    assert CALL_CANCELLED.decode(reply.data).call_id == "long"
    assert (returned["running"], returned["interrupted"], returned["session"]) == (
        True,
        True,
        "sh1",
    )
    assert polled["running"] is True
    assert (closed["closed"], closed["exit_code"]) == (True, 143)


async def test_a_session_of_a_runner_that_is_gone_says_so(bus, runtime, workdir):
    handles = workdir / "workspaces" / "tg_1" / ".stellaclaw" / "handles"
    async with running(runtime, run):
        await call(bus, run_tool("shell", {"command": "true"}, call="first"))  # the workspace
        handles.mkdir(parents=True, exist_ok=True)
        (handles / "sh7").write_bytes(msgspec.json.encode({"runner_id": "r-gone"}))
        finished = await call(bus, run_tool("shell", {"session": "sh7"}, call="poll"))
    assert finished.result == ToolFailed(
        error_kind="not_found", error="shell session sh7 ended: its runner restarted"
    )


async def test_a_poll_taken_by_another_runner_reaches_the_holder(bus, runtime):
    async with running(runtime, run, run):  # two runners on the pool, each with its own id
        started = await call(
            bus, run_tool("shell", {"command": "sleep 60", "wait_s": 0}, call="start")
        )
        holder = started.runner_id
        assert output(started)["session"] == "sh1"
        takers = set()
        for number in range(40):
            poll = run_tool("shell", {"session": "sh1", "wait_s": 0}, call=f"poll{number}")
            polled = await call(bus, poll)
            assert output(polled)["running"] is True
            takers.add(polled.runner_id)
            if takers - {holder}:
                break
        closed = await call(bus, run_tool("shell_close", {"session": "sh1"}, call="close"))
    assert takers - {holder}, "the other runner never took a poll in 40 tries"
    assert output(closed)["closed"] is True


async def test_new_ends_the_conversations_shell_sessions(bus, runtime, workdir):
    pid_file = workdir / "workspaces" / "tg_1" / "shell.pid"
    async with running(runtime, run):
        command = {"command": "echo $$ > shell.pid; sleep 60", "wait_s": 0}
        started = output(await call(bus, run_tool("shell", command, call="start")))
        pid = int(await eventually(lambda: pid_file.exists() and pid_file.read_text().strip()))
        ending = EndWork(conversation_id=ConversationId("tg_1"))
        await bus.nc.publish(subjects.tool_end("tg_1"), encode(ending))
        await eventually(lambda: is_gone(pid), what="the session's command ended")
        polled = await call(bus, run_tool("shell", {"session": "sh1"}, call="poll"))
    assert started["session"] == "sh1"
    assert isinstance(polled.result, ToolFailed)
    assert polled.result.error_kind == "not_found"
