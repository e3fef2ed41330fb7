"""A session process cut at every point of a turn (SPEC §3.9), under a real `stellaclaw up`.

The launcher restarts the killed (or stopped) session process; its new process takes the leases of
its slot over at once and resumes each cut turn from the journal in `sc_session` and the history in
SC_HIST. Whatever the point, the user gets exactly one answer per message and a tool runs once.
"""

import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from shared import layout, subjects
from tests.kit import stack as sc_stack
from tests.kit.llm_api import reply, tool_call
from tests.kit.waiting import eventually

pytestmark = pytest.mark.e2e
USER = 6001
USERS = list(range(6101, 6121))  # 20 people, one conversation each
HOLD_S = 60.0  # a held model call: the session is cut long before it would be answered
RECOVERY_S = 60.0  # from the cut to the answer: a restart (1 s backoff) and a takeover
DELIVERY = subjects.durable("delivery", "telegram")
TOOL_RUNNERS = subjects.durable("tools", layout.LOCAL_POOL)
NOT_RE_RUN = "interrupted by a restart; not re-run"
# The marker says the command runs; the session is killed before or after the line is written.
APPEND_THEN_WAIT = "echo line >> log.txt; touch started; sleep 2"
WAIT_THEN_APPEND = "touch started; sleep 2; echo line >> log.txt"


@asynccontextmanager
async def up(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    users: Sequence[int] = (USER,),
    shutdown_grace_s: float = 5,
) -> AsyncIterator[tuple[sc_stack.Fakes, sc_stack.Stack]]:
    """The fakes and a ready `stellaclaw up` (logs in `<tmp_path>/workdir/logs/`)."""
    async with (
        sc_stack.fakes(tmp_path, monkeypatch.setenv, users, shutdown_grace_s) as world,
        sc_stack.stack(world.config, world.workdir) as running,
    ):
        await running.wait_ready(sc_stack.SERVICES)
        yield world, running


def workspace(world: sc_stack.Fakes, user: int) -> Path:
    return world.workdir / "workspaces" / f"tg_{user}"


async def answered(world: sc_stack.Fakes, running: sc_stack.Stack, user: int, text: str) -> None:
    """Until the chat has the answer and delivery has nothing left (a duplicate would be sent)."""
    await eventually(
        lambda: text in world.telegram.transcript(user), RECOVERY_S, what=f"{text!r} to {user}"
    )
    await running.wait_drained(subjects.OUT_STREAM, DELIVERY)


@pytest.mark.timeout(150)  # a restart and a takeover: seconds each
@pytest.mark.parametrize(
    "command", [APPEND_THEN_WAIT, WAIT_THEN_APPEND], ids=["appended", "not_yet_appended"]
)
async def test_a_session_killed_while_its_tool_runs_answers_once_and_runs_the_tool_once(
    tmp_path, monkeypatch, command
):
    async with up(tmp_path, monkeypatch) as (world, running):
        world.llm.script(tool_call("shell", {"command": command}), reply("Logged."))
        world.telegram.user_says(USER, "log a line")
        started = workspace(world, USER) / "started"
        await eventually(started.exists, 30, what="the command to run")
        running.kill("session")
        await answered(world, running, USER, "Logged.")
        await running.wait_drained(subjects.TOOL_STREAM, TOOL_RUNNERS)  # the command has ended
    lines = (workspace(world, USER) / "log.txt").read_text().splitlines()
    assert lines.count("line") <= 1  # never run twice
    [result] = world.llm.requests[1].tool_messages  # the model's next request after the cut
    assert lines == ["line"] or NOT_RE_RUN in result.text, result.text
    assert world.telegram.transcript(USER).count("Logged.") == 1
    assert world.telegram.transcript(USER) == ["Logged."]  # and no failure text


@pytest.mark.timeout(150)
async def test_a_session_killed_before_its_next_model_call_asks_again_with_the_stored_result(
    tmp_path, monkeypatch
):
    async with up(tmp_path, monkeypatch) as (world, running):
        world.llm.script(
            tool_call("shell", {"command": "echo line >> log.txt"}),
            reply("never delivered: the session dies first", delay_s=HOLD_S),
            reply("Logged."),
        )
        world.telegram.user_says(USER, "log a line")
        await eventually(lambda: len(world.llm.requests) == 2, 30, what="the second model call")
        running.kill("session")  # the tool's result is stored; the model holds the next call
        await answered(world, running, USER, "Logged.")
    assert (workspace(world, USER) / "log.txt").read_text() == "line\n"
    cut, again = (request.tool_messages for request in world.llm.requests[1:])
    assert [message.text for message in again] == [message.text for message in cut]
    assert NOT_RE_RUN not in cut[0].text
    assert world.telegram.transcript(USER).count("Logged.") == 1
    assert world.telegram.transcript(USER) == ["Logged."]


@pytest.mark.timeout(150)
async def test_a_session_killed_as_its_answer_is_sent_neither_answers_again_nor_asks_again(
    tmp_path, monkeypatch
):
    async with up(tmp_path, monkeypatch) as (world, running):
        world.llm.script(reply("Answer one."), reply("Answer two."))
        world.telegram.user_says(USER, "one")
        sent = await world.telegram.next_sent(USER, timeout_s=30)
        killed = running.kill("session")  # the answer is out; its TurnFinished may not be
        assert sent.text == "Answer one."
        await running.wait_service("session", not_pid=killed)
        # A resumed first turn would come before this message: its answer closes the check.
        world.telegram.user_says(USER, "two")
        await answered(world, running, USER, "Answer two.")
    assert world.telegram.transcript(USER).count("Answer one.") == 1
    assert world.telegram.transcript(USER) == ["Answer one.", "Answer two."]
    assert [request.last_user_text for request in world.llm.requests] == ["one", "two"]


@pytest.mark.timeout(150)
async def test_twenty_conversations_cut_mid_turn_by_a_sigkill_are_each_answered_once(
    tmp_path, monkeypatch
):
    async with up(tmp_path, monkeypatch, USERS) as (world, running):
        world.llm.script(*[reply("never delivered", delay_s=HOLD_S) for _ in USERS])
        world.llm.always(reply("Answered."))  # the resumed turns ask again
        for user in USERS:
            world.telegram.user_says(user, f"question {user}")
        await eventually(lambda: len(world.llm.requests) >= len(USERS), 60, what="20 model calls")
        running.kill("session")
        await eventually(
            lambda: all("Answered." in world.telegram.transcript(u) for u in USERS),
            RECOVERY_S,
            what="an answer in every chat",
        )
        await running.wait_drained(subjects.OUT_STREAM, DELIVERY)
    transcripts = {user: world.telegram.transcript(user) for user in USERS}
    assert transcripts == {user: ["Answered."] for user in USERS}
    asked = sorted(request.last_user_text or "" for request in world.llm.requests)
    assert asked == sorted(f"question {user}" for user in USERS for _ in range(2))  # cut, again


@pytest.mark.timeout(150)
async def test_a_sigtermed_session_hands_its_turn_over_and_it_is_answered_once(
    tmp_path, monkeypatch
):
    async with up(tmp_path, monkeypatch, shutdown_grace_s=2) as (world, running):
        world.llm.script(
            reply("never delivered: the session stops first", delay_s=HOLD_S),
            reply("Worth the wait."),  # the restarted session asks again
        )
        world.telegram.user_says(USER, "think slowly")
        await eventually(lambda: len(world.llm.requests) == 1, 30, what="the first model call")
        stopped = running.pid("session")
        os.kill(stopped, signal.SIGTERM)  # the model call outlasts the 2 s grace
        await eventually(lambda: sc_stack.is_gone(stopped), 30, what="the session to stop")
        await answered(world, running, USER, "Worth the wait.")
    assert world.telegram.transcript(USER).count("Worth the wait.") == 1
    assert world.telegram.transcript(USER) == ["Worth the wait."]
    assert [request.last_user_text for request in world.llm.requests] == ["think slowly"] * 2
    assert "Traceback" not in (world.workdir / "logs" / "session.log").read_text()
