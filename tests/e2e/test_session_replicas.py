"""Two session replicas on one bus (DESIGN §5): the launcher's, and one started beside it with a
slot id of its own. A replica takes a session over only once its owner's lease has expired
(`layout.LEASE_TTL_S`); the owner it replaced, if it wakes up, is fenced: it neither appends to
the session's history nor answers.
"""

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from shared import layout, subjects
from shared.messages.history import AssistantMessage, HistoryEvent, TurnFinished, UserMessage
from tests.kit import stack as sc_stack
from tests.kit.llm_api import ChatRequest, reply
from tests.kit.waiting import eventually, eventually_async

pytestmark = pytest.mark.e2e
USER = 6501
USERS = list(range(7001, 7051))  # 50 people, one conversation each
OWNER = "e2e-replica/session/1"
TAKEOVER_S = layout.LEASE_TTL_S + 30.0  # the lease expires, then the other replica resumes
STALE_CALL_S = 10.0  # the stopped owner's model call: answered while it is still stopped
ANSWER = "Answered."
DELIVERY = subjects.durable("delivery", "telegram")
TURN = ["TurnStarted", "UserMessage", "AssistantMessage", "TurnFinished"]


@asynccontextmanager
async def up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, users: Sequence[int]
) -> AsyncIterator[tuple[sc_stack.Fakes, sc_stack.Stack]]:
    """The fakes and a ready `stellaclaw up` (logs in `<tmp_path>/workdir/logs/`)."""
    async with (
        sc_stack.fakes(tmp_path, monkeypatch.setenv, users) as world,
        sc_stack.stack(world.config, world.workdir) as running,
    ):
        await running.wait_ready(sc_stack.SERVICES)
        yield world, running


async def finished_turns(running: sc_stack.Stack, session: str, count: int):
    """The session's history once it holds `count` finished turns (None before)."""
    events = await running.history(session)
    return events if sum(isinstance(e, TurnFinished) for e in events) >= count else None


def was_fenced(world: sc_stack.Fakes, session: str) -> bool:
    """The launcher's session process logged that it stopped the session's actor."""
    log = (world.workdir / "logs" / "session.log").read_text()
    return f"lost the lease of {session}" in log or f"stopping the actor of {session}" in log


@pytest.mark.timeout(150)  # a lease expiry (15 s) and a takeover
async def test_an_owner_stopped_past_its_lease_neither_appends_nor_answers_when_it_wakes(
    tmp_path, monkeypatch
):
    async with up(tmp_path, monkeypatch, [USER]) as (world, running):
        world.llm.script(
            reply("from the stopped owner", delay_s=STALE_CALL_S), reply("From the new owner.")
        )
        world.telegram.user_says(USER, "hello")
        await eventually(lambda: len(world.llm.requests) == 1, 30, what="the first model call")
        stale = running.pid("session")
        [session] = await running.sessions(f"tg_{USER}")
        assert await running.lease_holders() == {session: stale}
        async with sc_stack.replica(running, "session", world.config, OWNER) as other:
            await running.wait_instances("session", 2)
            assert world.llm.busy_s == []  # still in the model call
            os.kill(stale, signal.SIGSTOP)
            try:
                before = await eventually_async(
                    lambda: finished_turns(running, session, 1), TAKEOVER_S, what="the takeover"
                )
                assert (await running.lease_holders())[session] == other.pid
                # the stopped owner's call is answered too: the reply waits in its socket
                await eventually(lambda: len(world.llm.busy_s) == 2, STALE_CALL_S + 5)
            finally:
                os.kill(stale, signal.SIGCONT)
            with contextlib.suppress(AssertionError):  # the asserts below say what it did
                await eventually(lambda: was_fenced(world, session), 30)
            after = await running.history(session)
            await running.wait_drained(subjects.OUT_STREAM, DELIVERY)
    assert after == before  # nothing appended by the woken owner
    assert [e.text for e in after if isinstance(e, AssistantMessage)] == ["From the new owner."]
    assert world.telegram.transcript(USER).count("From the new owner.") == 1
    assert world.telegram.transcript(USER) == ["From the new owner."]
    assert was_fenced(world, session)  # the woken owner stopped its actor


def first(user: int) -> str:
    return f"first from {user}"


def second(user: int) -> str:
    return f"second from {user}"


def user_texts(request: ChatRequest) -> list[str]:
    return [message.text for message in request.messages if message.role == "user"]


def requests_of(world: sc_stack.Fakes, user: int) -> list[ChatRequest]:
    """The model calls of the user's conversation, in the order they came."""
    return [r for r in world.llm.requests if user_texts(r)[:1] == [first(user)]]


def unanswered(world: sc_stack.Fakes) -> list[int]:
    """The chats that do not have their two answers yet."""
    return [user for user in USERS if world.telegram.transcript(user).count(ANSWER) < 2]


async def all_queued(running: sc_stack.Stack, count: int) -> bool:
    """Every conversation's session has its input stored in SC_SESS."""
    assert running.nc is not None
    info = await running.nc.jetstream().stream_info(
        subjects.SESSION_STREAM, subjects_filter=subjects.SESSION_INPUTS_ALL
    )
    return len(info.state.subjects or {}) >= count


async def spread(running: sc_stack.Stack, pids: set[int]) -> dict[str, int] | None:
    """Who holds which session, once each of the `pids` holds one (None before)."""
    holders = await running.lease_holders()
    return holders if pids <= set(holders.values()) else None


async def history_of(running: sc_stack.Stack, user: int) -> list[HistoryEvent]:
    [session] = await running.sessions(f"tg_{user}")
    return await running.history(session)


def check_conversation(world: sc_stack.Fakes, user: int, events: list[HistoryEvent]) -> None:
    """Two answers, in order, and the history holds exactly what the model was sent."""
    assert world.telegram.transcript(user) == [ANSWER, ANSWER], user
    assert [type(e).__name__ for e in events] == ["SessionStarted", *TURN, *TURN], user
    stored = [e.text for e in events if isinstance(e, UserMessage)]
    assert stored == [first(user), second(user)]
    asked = [user_texts(request) for request in requests_of(world, user)]
    assert asked[-1] == stored  # the last call was sent the whole history
    assert asked == sorted(asked, key=len)  # no call for the first after one for the second
    answers = [e.text for e in events if isinstance(e, AssistantMessage)]
    sent = [m.text for m in requests_of(world, user)[-1].messages if m.role == "assistant"]
    assert sent == answers[:1]


@pytest.mark.timeout(150)  # a lease expiry (15 s) and 25 takeovers
async def test_fifty_conversations_over_two_replicas_outlive_a_sigkilled_one_in_order(
    tmp_path, monkeypatch
):
    async with up(tmp_path, monkeypatch, USERS) as (world, running):
        world.llm.always(reply(ANSWER, delay_s=2.0))  # every turn is in flight for a while
        async with sc_stack.replica(running, "session", world.config, OWNER) as other:
            await running.wait_instances("session", 2)
            for user in USERS:
                world.telegram.user_says(user, first(user))
            await eventually_async(lambda: all_queued(running, len(USERS)), 60, what="inputs")
            for user in USERS:
                world.telegram.user_says(user, second(user))
            both = {running.pid("session"), other.pid}
            holders = await eventually_async(lambda: spread(running, both), 30, what="spread")
            other.kill()  # SIGKILL: the launcher does not restart it
            with contextlib.suppress(AssertionError):  # the assert below names the chats
                await eventually(lambda: not unanswered(world), TAKEOVER_S + 30)
            assert unanswered(world) == []
            await running.wait_drained(subjects.OUT_STREAM, DELIVERY)
            histories = {u: await history_of(running, u) for u in USERS}
    assert set(holders.values()) == both  # both replicas had sessions when one was killed
    assert len(world.llm.requests) > 2 * len(USERS)  # some turns were cut and asked again
    for user in USERS:
        check_conversation(world, user, histories[user])
