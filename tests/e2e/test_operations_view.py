"""The operator's view of a real `stellaclaw up`: `stellaclaw status`, `bus tail` and `bus replay`
run as commands, logged in as the read-only observer, while a Telegram message is answered."""

import asyncio
from pathlib import Path

import msgspec
import pytest

from services.launcher.status_report import Report
from shared import subjects
from tests.kit import stack as sc_stack
from tests.kit.llm_api import reply, tool_call
from tests.kit.waiting import eventually, eventually_async

pytestmark = pytest.mark.e2e
USER = 7301
CONV = f"tg_{USER}"
WAIT_FOR_RELEASE = "while [ ! -e release ]; do sleep 0.05; done; echo released"
WIDTH = 100
SESSION_LEASES = subjects.session_lease_key("")


async def cli(*arguments: str) -> tuple[int | None, str, str]:
    """`stellaclaw <arguments>` to its end: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sc_stack.stellaclaw(),
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def start_tail(where: list[str], *arguments: str) -> asyncio.subprocess.Process:
    """`stellaclaw bus tail`, once it says it is subscribed."""
    process = await asyncio.create_subprocess_exec(
        sc_stack.stellaclaw(),
        *("bus", "tail", *arguments, *where),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    first = await asyncio.wait_for(process.stderr.readline(), 30)
    assert first.decode().startswith(f"tailing {subjects.APP_ALL}"), first
    return process


async def tailed_line(tail: asyncio.subprocess.Process) -> str:
    """The one line `bus tail --count 1` printed before it exited."""
    out, _ = await asyncio.wait_for(tail.communicate(), 60)
    assert tail.returncode == 0
    [line] = out.decode().splitlines()
    return line


async def status_during_the_turn(where: list[str]) -> Report:
    """`status --json` once it shows the turn running (its tool call waits for a release)."""

    async def turn_running() -> Report | None:
        code, out, _ = await cli("status", "--json", *where)
        found = msgspec.json.decode(out, type=Report)
        return found if code == 0 and found.turns_running == 1 and found.leases else None

    return await eventually_async(turn_running, 60, what="status showing the turn")


async def replayed(where: list[str], *arguments: str) -> str:
    code, out, _ = await cli("bus", "replay", *arguments, *where)
    assert code == 0
    return out


@pytest.mark.timeout(240)
async def test_status_tail_and_replay_show_a_turn_as_it_runs(tmp_path: Path, monkeypatch):
    async with (
        sc_stack.fakes(tmp_path, monkeypatch.setenv, [USER]) as world,
        sc_stack.stack(world.config, world.workdir) as running,
    ):
        await running.wait_ready(sc_stack.SERVICES)
        where = ["--config", str(world.config), "--workdir", str(world.workdir)]
        tail = await start_tail(where, "--kind", "message_received", "--count", "1")
        world.llm.script(tool_call("shell", {"command": WAIT_FOR_RELEASE}), reply("All done."))
        world.telegram.user_says(USER, "hello operations")

        line = await tailed_line(tail)
        assert f"{subjects.inbound('telegram', CONV)} message_received trace=" in line
        assert line.endswith(": 16 chars")  # the text is content: hidden without --content

        report = await status_during_the_turn(where)
        pids = {i.service: i.pid for i in report.instances}
        assert pids == {service: running.pid(service) for service in sc_stack.SERVICES}
        [session] = await running.sessions(CONV)
        sessions = [lease for lease in report.leases if lease.key.startswith(SESSION_LEASES)]
        assert [(lease.key, lease.pid) for lease in sessions] == [
            (subjects.session_lease_key(session), running.pid("session"))
        ]
        tools = next(i for i in report.instances if i.service == "tools")
        assert tools.counters["calls_running"] == 1
        assert report.problems == []
        code, text, _ = await cli("status", *where)
        print(f"\n$ stellaclaw status\n{text}")  # noqa: T201 -- the screen, read with -s
        assert code == 0
        assert "Turns running 1" in text
        assert max(len(line) for line in text.splitlines()) <= WIDTH

        (world.workdir / "workspaces" / CONV / "release").touch()
        await eventually(
            lambda: "All done." in world.telegram.transcript(USER), 60, what="the answer"
        )
        shown = "--content"
        transcript = await replayed(where, subjects.HISTORY_STREAM, "--session", session, shown)
        for part in ("    hello operations", "    All done.", "    → shell ", "result shell "):
            assert part in transcript
        [stored] = (await replayed(where, subjects.IN_STREAM, "--conv", CONV)).splitlines()
        assert stored.startswith("#")
        assert f".{CONV} message_received trace=" in stored
