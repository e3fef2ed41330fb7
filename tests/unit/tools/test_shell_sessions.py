"""Shell sessions per SPEC §5.2: a command outliving wait_s becomes `sh<n>`; polls read new
output and wait for the end; input needs a tty; shell_close ends it; the limit of 16; a cut-short
wait; a cancelled call ends its own command, not earlier sessions. Real bash, subprocess mode."""

import asyncio
import os

import msgspec
import pytest

from services.tools import handles
from services.tools.builtin.shell import ShellArgs, ShellResult, sessions_of, shell
from services.tools.builtin.shell_close import ShellCloseArgs, shell_close
from services.tools.builtin.shell_sessions import MAX_RUNNING
from services.tools.context import RunnerContext
from services.tools.results import ToolError
from tests.kit.waiting import eventually
from tests.unit.tools.samples import tool_call


@pytest.fixture
async def call(workdir):
    found = msgspec.structs.replace(tool_call(workdir), runner=RunnerContext(runner_id="r-a"))
    yield found
    await sessions_of(found).end_all()


async def run(call, **arguments) -> ShellResult:
    return await shell(ShellArgs(**arguments), call)


async def failure(call, **arguments) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await run(call, **arguments)
    return caught.value


async def test_a_command_past_wait_s_becomes_a_session_that_is_polled_to_its_end(call, tmp_path):
    gate = tmp_path / "gate"
    started = await run(
        call,
        command=f"echo first; while [ ! -e {gate} ]; do sleep 0.01; done; echo second; exit 4",
        wait_s=0.2,
    )
    assert (started.running, started.session, started.output) == (True, "sh1", "first\n")
    assert (started.exit_code, started.timed_out) == (None, None)
    gate.touch()
    done = await run(call, session="sh1", wait_s=10)
    assert (done.running, done.exit_code, done.output, done.session) == (
        False,
        4,
        "second\n",
        "sh1",
    )
    assert (call.root / done.log_path).read_text() == "first\nsecond\n"
    gone = await failure(call, session="sh1")
    assert (gone.kind, str(gone)) == ("not_found", "shell session sh1 has ended (exit code 4)")


async def test_a_poll_returns_only_new_output_and_waits_at_most_wait_s(call):
    started = await run(
        call, command="for i in 1 2 3; do echo $i; sleep 0.05; done; sleep 60", wait_s=0.5
    )
    assert started.output == "1\n2\n3\n"
    again = await run(call, session=started.session, wait_s=0)
    assert (again.running, again.output, again.total_output_chars) == (True, "", 0)


async def test_input_reaches_a_tty_session_and_is_refused_without_one(call):
    asking = await run(
        call, command="read -r name; echo hello $name; test -t 0 && echo tty", tty=True, wait_s=0.2
    )
    assert asking.running is True
    answered = await run(call, session=asking.session, input="Ada\n", wait_s=10)
    assert answered.running is False
    assert "hello Ada" in answered.output
    assert "tty" in answered.output
    plain = await run(call, command="sleep 60", wait_s=0)
    refused = await failure(call, session=plain.session, input="x\n")
    assert (refused.kind, str(refused)) == (
        "invalid_arguments",
        f"session {plain.session} has no open stdin;"
        " start the command with tty=true to interact with it",
    )


async def test_shell_close_terms_then_reports_and_forgets_the_session(call):
    started = await run(call, command="echo bye; sleep 60", wait_s=0.2)
    closed = await shell_close(ShellCloseArgs(session=named(started)), call)
    assert (closed.session, closed.closed, closed.signal) == (started.session, True, "term")
    assert closed.exit_code == 128 + 15
    assert sessions_of(call).running == {}
    unknown = await failure(call, session="sh9")
    assert str(unknown) == "unknown shell session: sh9; running: none"
    with pytest.raises(ToolError, match="unknown shell session: sh9; running: none"):
        await shell_close(ShellCloseArgs(session="sh9"), call)


async def test_kill_ends_a_command_that_ignores_term(call):
    started = await run(call, command="trap '' TERM; sleep 60", wait_s=0.2)
    closed = await shell_close(ShellCloseArgs(session=named(started), signal="kill"), call)
    assert (closed.closed, closed.exit_code) == (True, 137)


async def test_the_timeout_kills_a_session_and_the_poll_says_so(call):
    started = await run(call, command="sleep 60", wait_s=0, timeout_s=1)
    done = await run(call, session=started.session, wait_s=30)
    assert (done.running, done.timed_out, done.signal) == (False, True, "SIGTERM")


async def test_at_most_16_sessions_run_in_a_conversation(call):
    for _ in range(MAX_RUNNING):
        assert (await run(call, command="sleep 60", wait_s=0)).running
    refused = await failure(call, command="true")
    assert (refused.kind, str(refused)) == (
        "limit_reached",
        "16 shell sessions are running; close some with shell_close",
    )


async def test_a_cut_short_wait_returns_at_once_and_the_command_goes_on(call):
    waiting = asyncio.create_task(run(call, command="sleep 60", wait_s=300))
    await asyncio.sleep(0)
    call.cut_short.set()
    result = await asyncio.wait_for(waiting, 10)
    assert (result.running, result.interrupted, result.session) == (True, True, "sh1")
    assert not sessions_of(call).running["sh1"].task.done()


async def test_a_cancelled_call_ends_its_own_command_but_not_earlier_sessions(call, tmp_path):
    earlier = await run(call, command="sleep 60", wait_s=0)
    pid_file = tmp_path / "pid"
    own = asyncio.create_task(run(call, command=f"echo $$ > {pid_file}; sleep 60", wait_s=300))
    pid = int((await _read_when_written(pid_file)).strip())
    own.cancel()
    with pytest.raises(asyncio.CancelledError):
        await own
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not sessions_of(call).running[named(earlier)].task.done()


async def test_another_runners_session_is_sent_there(call):
    other = msgspec.structs.replace(call, runner=RunnerContext(runner_id="r-b"))
    started = await run(other, command="sleep 60", wait_s=0)
    with pytest.raises(handles.HeldElsewhereError) as caught:
        await run(call, session=started.session)
    assert caught.value.runner_id == "r-b"
    await sessions_of(other).end_all()


async def test_command_and_session_rules(call):
    assert str(await failure(call)) == "give command to run, or session to poll"
    assert (
        str(await failure(call, command="true", session="sh1"))
        == "give command or session, not both"
    )
    assert (
        str(await failure(call, command="true", input="x"))
        == "input needs session (a running shell session)"
    )


def named(result: ShellResult) -> str:
    assert result.session is not None
    return result.session


async def _read_when_written(path) -> str:
    return await eventually(lambda: path.exists() and path.read_text(), what=f"{path} written")
