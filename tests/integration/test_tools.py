"""The tools service against a real nats-server and real subprocesses."""

from typing import Any

import msgspec
import pytest
from nats.errors import NoRespondersError

from services.tools.service import run
from shared import layout, subjects
from shared.bus import encode
from shared.ids import ToolCallId
from shared.messages.tools import (
    CALL_CANCELLED,
    CATALOG_REPLY,
    TOOL_EVENT,
    CancelCall,
    ListTools,
    RunTool,
    ToolFailed,
    ToolFinished,
    ToolStarted,
    ToolSucceeded,
    ToolTraits,
)
from tests.kit.nats import TestBus
from tests.kit.services import make_runtime, running
from tests.kit.stack import is_gone
from tests.kit.waiting import eventually, eventually_async
from tests.unit.tools.samples import run_tool

CONFIG = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "x"}}}


@pytest.fixture
def runtime(workdir, nats_access):
    return make_runtime(CONFIG, workdir, nats_access)


async def call(bus: TestBus, request: RunTool) -> ToolFinished:
    """Send one RunTool as the session does and wait for its ToolFinished."""
    result_subject = subjects.tool_result(request.session_id, request.call_id)
    await bus.watch(result_subject)
    await bus.publish(
        subjects.tool_request("local", request.session_id),
        request,
        msg_id=subjects.tool_request_msg_id(request.session_id, request.call_id),
    )
    return await finished_on(bus, result_subject)


async def finished_on(bus: TestBus, result_subject: str) -> ToolFinished:
    """The call's ToolFinished (a ToolStarted may come first)."""
    while True:
        event = await bus.next(result_subject, TOOL_EVENT, timeout_s=10)
        if isinstance(event, ToolFinished):
            return event


def output(finished: ToolFinished) -> dict[str, object]:
    assert isinstance(finished.result, ToolSucceeded), finished.result
    decoded = msgspec.json.decode(finished.result.output)
    assert isinstance(decoded, dict)
    return decoded


async def test_shell_echo_answers_on_the_result_subject(bus, runtime):
    async with running(runtime, run):
        finished = await call(bus, run_tool("shell", {"command": "echo hi"}, call="c_echo"))
    assert (finished.session_id, finished.call_id, finished.tool) == ("tg_1_fg1", "c_echo", "shell")
    result = output(finished)
    assert (result["exit_code"], result["output"], result["running"]) == (0, "hi\n", False)
    assert finished.runner_id.startswith("r")
    assert finished.duration_s >= 0
    stored = await bus.stored(
        subjects.TOOL_RESULT_STREAM, subjects.tool_result("tg_1_fg1", "c_echo"), TOOL_EVENT
    )
    assert len(stored) == 2
    assert isinstance(stored[0], ToolStarted)
    # the default wait (30 s) and its 10 s of slack: the command runs on as a session after it
    assert (stored[0].call_id, stored[0].limit_s) == ("c_echo", 40.0)
    assert stored[1] == finished


async def test_a_file_written_by_shell_is_read_by_file_read(bus, runtime, workdir):
    async with running(runtime, run):
        await call(bus, run_tool("shell", {"command": "printf 'a\\nb\\n' > notes.txt"}, call="w"))
        finished = await call(bus, run_tool("file_read", {"file_path": "notes.txt"}, call="r"))
    assert output(finished)["content"] == "1: a\n2: b"
    assert (workdir / "workspaces" / "tg_1" / "notes.txt").read_text(encoding="utf-8") == "a\nb\n"


async def test_a_timeout_kills_the_whole_process_group(bus, runtime):
    command = "sleep 300 & echo $!; wait"
    async with running(runtime, run):
        finished = await call(bus, run_tool("shell", {"command": command, "timeout_s": 1}))
    result = output(finished)
    assert (result["timed_out"], result["signal"], result["exit_code"]) == (True, "SIGTERM", 143)
    child = int(str(result["output"]).strip())
    await eventually(lambda: is_gone(child), what=f"the child sleep {child} ended")


async def test_bad_arguments_and_unknown_tools_fail_for_the_model(bus, runtime):
    async with running(runtime, run):
        bad = await call(bus, run_tool("shell", {"cmd": "ls"}, call="bad"))
        unknown = await call(bus, run_tool("teleport", {}, call="unknown"))
    assert bad.result == ToolFailed(
        error_kind="invalid_arguments",
        error=(
            'unknown argument "cmd"; accepted: command, session, input, workdir, wait_s,'
            " timeout_s, tty, max_output_chars"
        ),
    )
    assert unknown.result == ToolFailed(error_kind="unknown_tool", error="unknown tool: teleport")


async def test_the_catalog_request_is_answered(bus, runtime):
    async with running(runtime, run):
        await call(bus, run_tool("teleport", {}))  # answered: the catalog endpoint is up
        reply = await bus.nc.request(
            subjects.tool_catalog("local"), msgspec.json.encode(ListTools()), timeout=5
        )
    catalog = CATALOG_REPLY.decode(reply.data)
    assert [spec.name for spec in catalog.tools] == [
        "file_read",
        "file_write",
        "edit",
        "apply_patch",
        "grep",
        "glob",
        "ls",
        "shell",
        "shell_close",
        "web_fetch",
        "file_download_start",
        "file_download_progress",
        "file_download_wait",
        "file_download_cancel",
        "send_file",
    ]
    shell = msgspec.json.decode(next(t for t in catalog.tools if t.name == "shell").parameters)
    assert shell["type"] == "object"
    assert set(shell["properties"]) >= {"command", "session", "input", "wait_s", "tty"}
    traits = {spec.name: spec.traits for spec in catalog.tools}  # the session plans batches by them
    assert traits["shell"] == ToolTraits(
        mode="interruptible", is_serial=False, is_idempotent=False, time_limit_s=310.0
    )
    assert traits["file_read"] == ToolTraits(
        mode="immediate", is_serial=False, is_idempotent=True, time_limit_s=120.0
    )
    assert traits["edit"] == ToolTraits(
        mode="immediate", is_serial=True, is_idempotent=False, time_limit_s=120.0
    )


async def test_a_redelivered_shell_call_is_not_run_again(bus, runtime, workdir):
    [consumer] = layout.durables(runtime.config.bus)["tools"]
    taken = await bus.js.pull_subscribe_bind(durable=consumer.durable, stream=consumer.stream)
    request = run_tool("shell", {"command": "touch ran"}, call="again")
    await bus.publish(subjects.tool_request("local", request.session_id), request)
    [first] = await taken.fetch(1, timeout=5)  # a runner took it, then died before finishing
    await first.nak()
    await taken.unsubscribe()
    result_subject = subjects.tool_result(request.session_id, request.call_id)
    await bus.watch(result_subject)
    async with running(runtime, run):
        finished = await finished_on(bus, result_subject)
    assert finished.result == ToolFailed(
        error_kind="interrupted_by_restart",
        error="interrupted by a restart; not re-run. Check its effects before repeating it.",
    )
    assert not (workdir / "workspaces" / "tg_1" / "ran").exists()


async def test_a_side_effect_delivered_as_new_after_its_start_was_stored_is_not_run_again(
    bus, runtime, workdir
):
    """A restarted bus may lose a consumer's delivery count: the call then comes as a first
    delivery. The call's stored ToolStarted (SC_TOOLRES) tells the runner it ran before."""
    request = run_tool("shell", {"command": "echo ran >> effects.log"}, call="twice")
    async with running(runtime, run):
        first = await call(bus, request)
        again = subjects.tool_request_msg_id(request.session_id, request.call_id) + "-lost"
        await bus.publish(subjects.tool_request("local", request.session_id), request, msg_id=again)
        [consumer] = layout.durables(runtime.config.bus)["tools"]
        await eventually_async(lambda: drained(bus, consumer.stream, consumer.durable))
    assert output(first)["exit_code"] == 0
    effects = workdir / "workspaces" / "tg_1" / "effects.log"
    assert effects.read_text(encoding="utf-8") == "ran\n"


async def drained(bus: TestBus, stream: str, durable: str) -> bool:
    info = await bus.js.consumer_info(stream, durable)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def test_a_call_cut_by_shutdown_takes_its_process_group_along(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG | {"shutdown_grace_s": 0.2}, workdir, nats_access)
    pid_file = workdir / "workspaces" / "tg_1" / "child.pid"
    command = "sleep 300 & echo $! > child.pid; wait"
    async with running(runtime, run):
        await bus.publish(
            subjects.tool_request("local", "tg_1_fg1"), run_tool("shell", {"command": command})
        )
        await eventually(lambda: pid_file.exists() and pid_file.read_text(encoding="ascii"))
    child = int(pid_file.read_text(encoding="ascii"))
    await eventually(lambda: is_gone(child), what=f"the child sleep {child} ended")


async def test_a_cancel_request_ends_a_running_call_and_its_process_group(bus, runtime, workdir):
    request = run_tool(
        "shell", {"command": "sleep 300 & echo $! > child.pid; sleep 300"}, call="c_long"
    )
    result_subject = subjects.tool_result(request.session_id, request.call_id)
    await bus.watch(result_subject)
    async with running(runtime, run):
        await bus.publish(subjects.tool_request("local", request.session_id), request)
        assert isinstance(await bus.next(result_subject, TOOL_EVENT, 10), ToolStarted)
        child_file = workdir / "workspaces" / "tg_1" / "child.pid"
        await eventually(lambda: child_file.exists() and child_file.read_text().strip())
        child = int(child_file.read_text())
        cancel = CancelCall(session_id=request.session_id, call_id=request.call_id)
        reply = await bus.nc.request(
            subjects.tool_cancel(request.session_id, request.call_id), encode(cancel), timeout=5
        )
        finished = await finished_on(bus, result_subject)
        await eventually(lambda: is_gone(child), timeout_s=2)
        nobody = CancelCall(session_id=request.session_id, call_id=ToolCallId("c_unknown"))
        with pytest.raises(TimeoutError):  # no runner holds it: nobody answers
            await bus.nc.request(
                subjects.tool_cancel(request.session_id, "c_unknown"), encode(nobody), timeout=0.5
            )
    answered = CALL_CANCELLED.decode(reply.data)
    assert (answered.call_id, answered.runner_id) == ("c_long", finished.runner_id)
    assert finished.result == ToolFailed(error_kind="cancelled", error="cancelled by user")


async def test_files_are_written_edited_searched_and_listed_through_the_bus(bus, runtime, workdir):
    async with running(runtime, run):
        wrote = await call(
            bus, run_tool("file_write", {"file_path": "src/app.py", "content": "x = 1\n"}, call="w")
        )
        edited = await call(
            bus,
            run_tool(
                "edit",
                {"file_path": "src/app.py", "old_text": "x = 1", "new_text": "x = 2"},
                call="e",
            ),
        )
        found = await call(bus, run_tool("grep", {"pattern": "x = 2"}, call="g"))
        listed = await call(bus, run_tool("ls", {"path": "src"}, call="l"))
        refused = await call(
            bus, run_tool("file_write", {"file_path": "a\u0000b", "content": ""}, call="n")
        )

    assert output(wrote)["created"] is True
    assert output(edited)["replacements"] == 1
    assert (workdir / "workspaces" / "tg_1" / "src" / "app.py").read_text() == "x = 2\n"
    assert output(found)["filenames"] == ["src/app.py"]
    assert "app.py" in str(output(listed)["tree"])
    assert isinstance(refused.result, ToolFailed)  # the runner answers and stays healthy
    assert refused.result.error_kind == "invalid_arguments"


async def registered(bus: TestBus) -> dict[str, Any]:
    """The tools service's `$SRV.INFO` once it has registered (a moment after it starts)."""

    async def info() -> dict[str, Any] | None:
        try:
            reply = await bus.nc.request("$SRV.INFO.tools", b"", timeout=2)
        except NoRespondersError:
            return None
        decoded: dict[str, Any] = msgspec.json.decode(reply.data)
        return decoded

    return await eventually_async(info, timeout_s=10, what="the tools service registered")


async def test_a_runner_registers_its_pools_host_and_id_and_counts_running_calls(bus, runtime):
    command = {"command": "sleep 30", "wait_s": 30}
    request = run_tool("shell", command, call="c_busy")
    result_subject = subjects.tool_result(request.session_id, request.call_id)
    await bus.watch(result_subject)
    async with running(runtime, run):
        info = await registered(bus)
        await bus.publish(subjects.tool_request("local", request.session_id), request)
        started = await bus.next(result_subject, TOOL_EVENT, 10)
        stats = msgspec.json.decode((await bus.nc.request("$SRV.STATS.tools", b"", timeout=5)).data)
        cancel = CancelCall(session_id=request.session_id, call_id=request.call_id)
        await bus.nc.request(
            subjects.tool_cancel(request.session_id, "c_busy"), encode(cancel), timeout=5
        )
        await finished_on(bus, result_subject)
    assert isinstance(started, ToolStarted)
    assert info["metadata"]["pools"] == "local"
    assert info["metadata"]["runner_id"] == started.runner_id
    assert info["metadata"]["host"]
    data = [endpoint.get("data") or {} for endpoint in stats["endpoints"]]
    assert any(found.get("calls_running") == 1 for found in data)
