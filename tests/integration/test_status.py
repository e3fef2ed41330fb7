"""`stellaclaw status` on a real bus: live instances with their counters, a running turn and its
lease, stream and consumer lag, dead letters; and its failure paths (a service with no live
instance, a stuck consumer, a refused login, an unreachable bus)."""

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import msgspec
from nats.js.errors import ServiceUnavailableError

from services.launcher import status_view
from services.launcher.observer_login import observe
from services.launcher.status_report import Report
from services.launcher.status_survey import Probe, survey
from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import layout, subjects
from shared.ids import ConversationId, SessionId, ToolCallId
from shared.messages.contract import Workspace
from shared.messages.events import BadMessage, DeadLettered
from shared.messages.outbound import OUTPUT, SendReply
from shared.messages.session import ConversationSettings, HandleMessage, WakeSession
from shared.messages.tools import RunTool
from tests.kit.llm_api import llm_api, reply, tool_call
from tests.kit.services import make_runtime, running
from tests.kit.stack import stellaclaw
from tests.kit.waiting import eventually_async
from tests.unit.shared.samples import message_received

CONV = ConversationId("cli_status")
SESSION = SessionId("cli_status_fg1")
OUT = subjects.outbound("cli", CONV)
WAIT_FOR_RELEASE = "while [ ! -e release ]; do sleep 0.05; done; echo released"
TOOLS = subjects.durable("tools", layout.LOCAL_POOL)


def config(base_url: str) -> dict[str, object]:
    model = {"provider": "openai_chat", "model": "gpt-test", "base_url": base_url, "api_key": "k"}
    return {"default_model": "main", "models": {"main": model}, "shutdown_grace_s": 5}


async def look(access, *expected: str, stuck_after_s: float = 60.0) -> Report:
    """What `status` reports, on an observer login (answers gathered for 0.3 s)."""
    probe = Probe(expected=expected, stuck_after_s=stuck_after_s, instance_wait_s=0.3)
    return await observe(access, "status", lambda conn: survey(conn.nc, probe))


async def say(bus, text: str) -> None:
    handle = HandleMessage(
        session_id=SESSION,
        input_seq=1,
        message=message_received(CONV, text),
        settings=ConversationSettings(
            model="main", workspace=Workspace(pool="local", path=f"workspaces/{CONV}")
        ),
    )
    await bus.publish(subjects.session_input(SESSION), handle, msg_id="in:1")
    with contextlib.suppress(ServiceUnavailableError):
        await bus.publish(subjects.wake(SESSION), WakeSession(session_id=SESSION))


def assert_fits(report: Report) -> str:
    text = status_view.render(report)
    too_long = [line for line in text.splitlines() if len(line) > status_view.WIDTH]
    assert too_long == []
    return text


async def test_status_shows_instances_a_running_turn_its_lease_and_the_lag(
    bus, workdir, nats_access
):
    async with llm_api(api_key="k") as llm:
        llm.script(tool_call("shell", {"command": WAIT_FOR_RELEASE}), reply("Released."))
        runtime = make_runtime(config(llm.base_url), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            await say(bus, "wait for it")

            async def turn_running() -> Report | None:
                found = await look(nats_access, "session", "tools")
                return found if found.turns_running == 1 and found.leases else None

            report = await eventually_async(turn_running, 20, what="a running turn")
            (workdir / "workspaces" / CONV / "release").touch()
            while not isinstance(answer := await bus.next(OUT, OUTPUT, timeout_s=20), SendReply):
                pass
            assert answer.text == "Released."
    assert report.problems == []
    assert {(i.service, i.host, i.pid) for i in report.instances} == {
        ("session", socket.gethostname(), os.getpid()),
        ("tools", socket.gethostname(), os.getpid()),
    }
    tools = next(i for i in report.instances if i.service == "tools")
    assert tools.counters["calls_running"] == 1
    assert tools.metadata["pools"] == layout.LOCAL_POOL
    [lease] = report.leases
    assert (lease.key, lease.owner_id, lease.pid) == (
        subjects.session_lease_key(SESSION),
        runtime.owner_id,
        os.getpid(),
    )
    names = {(d.stream, d.durable) for d in report.durables}
    assert (subjects.WAKE_STREAM, subjects.durable("session")) in names
    assert (subjects.TOOL_STREAM, TOOLS) in names
    assert not any(d.is_stuck for d in report.durables)
    history = next(s for s in report.streams if s.name == subjects.HISTORY_STREAM)
    assert history.messages >= 3  # session started, turn started, the user's message, …
    text = assert_fits(report)
    assert "Turns running 1" in text
    assert f"{runtime.owner_id}" in text
    assert "No problems." in text


async def test_a_service_without_a_live_instance_is_a_problem(bus, nats_access):
    report = await look(nats_access, "delivery", "session")
    assert report.instances == []
    assert report.problems == ["delivery: no live instance", "session: no live instance"]
    text = assert_fits(report)
    assert "delivery         NO LIVE INSTANCE" in text
    assert "Problems (2)" in text


def run_tool(call: str) -> RunTool:
    return RunTool(
        session_id=SESSION,
        conversation_id=CONV,
        call_id=ToolCallId(call),
        tool="shell",
        arguments=msgspec.Raw(b'{"command": "true"}'),
        workspace=Workspace(pool="local", path=f"workspaces/{CONV}"),
    )


async def test_a_consumer_with_work_waiting_and_no_progress_is_stuck(bus, nats_access):
    await bus.publish(subjects.tool_request("local", SESSION), run_tool("c1"))
    await bus.publish(subjects.tool_request("local", SESSION), run_tool("c2"))
    patient = await look(nats_access)
    [tools] = [d for d in patient.durables if d.durable == TOOLS]
    assert (tools.pending, tools.ack_pending, tools.is_stuck) == (2, 0, False)
    assert tools.waited_s is not None
    assert tools.waited_s < 60
    assert patient.problems == []

    async def stuck() -> Report | None:
        found = await look(nats_access, stuck_after_s=0.3)
        return found if found.problems else None

    report = await eventually_async(stuck, 10, what="the tools durable judged stuck")
    [problem] = report.problems
    assert problem.startswith(f"{subjects.TOOL_STREAM}/{TOOLS}: stuck: 2 waiting, the oldest for")
    assert f"{subjects.TOOL_STREAM}/{TOOLS}" in assert_fits(report)
    assert "STUCK" in status_view.render(report)


async def test_dead_letters_and_bad_messages_are_counted(bus, nats_access):
    dead = DeadLettered(
        service="delivery",
        subject=subjects.outbound("telegram", "tg_1"),
        stream=subjects.OUT_STREAM,
        stream_seq=7,
        deliveries=10,
        last_error="RuntimeError: boom",
    )
    bad = BadMessage(service="session", subject=subjects.wake("x"), stream_seq=3, reason="bad")
    await bus.publish(subjects.DEAD_LETTER_EVENT, dead, msg_id="dead:1")
    await bus.publish(subjects.DEAD_LETTER_EVENT, dead, msg_id="dead:2")
    await bus.publish(subjects.BAD_MESSAGE_EVENT, bad, msg_id="bad:1")
    report = await look(nats_access)
    assert (report.dead_letters, report.bad_messages) == (2, 1)
    assert "dead letters 2 · bad messages 1" in status_view.render(report)


async def cli(*arguments: str) -> tuple[int | None, str, str]:
    """`stellaclaw <arguments>` as an operator runs it: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        stellaclaw(),
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


def observer_config(path: Path, url: str, password: str, *, has_telegram: bool = False) -> Path:
    telegram = '[telegram]\nbot_token = "${UNSET_BOT_TOKEN}"\n' if has_telegram else ""
    path.write_text(
        f'{telegram}[bus]\nurl = "{url}"\n\n[bus.services.observer]\n'
        f'user = "observer"\npassword = "{password}"\n',
        encoding="utf-8",
    )
    return path


async def test_the_command_prints_json_and_exits_1_without_live_services(
    bus, nats_access, tmp_path
):
    password = nats_access.logins["observer"].password or ""
    path = observer_config(tmp_path / "c.toml", nats_access.url, password, has_telegram=True)
    code, out, err = await cli("status", "--config", str(path), "--json")
    assert (code, err) == (1, "")
    found = msgspec.json.decode(out, type=Report)
    assert found.expected == [
        "conversation",
        "session",
        "tools",
        "delivery",
        "ingress_telegram",
    ]  # the bot token is a service's secret: the observer never resolves it
    assert len(found.problems) == 5
    code, out, _ = await cli("status", "--config", str(path))
    assert code == 1
    assert "Problems (5)" in out
    assert max(len(line) for line in out.splitlines()) <= status_view.WIDTH


async def test_a_refused_login_or_an_unreachable_bus_is_one_line_and_exit_2(
    bus, nats_access, tmp_path
):
    wrong = observer_config(tmp_path / "wrong.toml", nats_access.url, "not-the-password")
    code, out, err = await cli("status", "--config", str(wrong))
    assert (code, out) == (2, "")
    assert err.startswith(f"bus: NATS at {nats_access.url} refused the login as observer")
    assert err.count("\n") == 1
    gone = observer_config(tmp_path / "gone.toml", "nats://127.0.0.1:1", "x")
    code, _, err = await cli("status", "--config", str(gone))
    assert code == 2
    assert err.startswith("bus: cannot reach NATS at nats://127.0.0.1:1")
