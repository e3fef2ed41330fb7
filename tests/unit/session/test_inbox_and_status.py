"""The inbox's done prefix, what history says was consumed, and the status a head gives."""

import asyncio

import pytest

from services.session import inbox, status, tool_batch
from services.session.heads import Head, Held, Journal
from shared.ids import SessionId, TurnId
from shared.messages.contract import Sender
from shared.messages.history import HistoryEvent, TurnFinished, TurnStarted, UserMessage
from shared.messages.session import CancelTurn
from tests.integration.test_session import handle

T1, T2 = TurnId("s_t1"), TurnId("s_t2")
ADA = Sender(display_name="Ada")


def box(*seqs: int) -> inbox.Inbox:
    found = inbox.Inbox(conn=None, session_id=SessionId("s"), cursor=seqs[0] - 1)  # type: ignore[arg-type]
    found.entries = [inbox.Entry(seq=seq, input=handle("x", seq)) for seq in seqs]
    return found


def test_the_cursor_moves_over_the_done_prefix_only():
    found = box(5, 6, 7)
    found.done(found.entries[1])  # a control done ahead of the input before it
    assert found.cursor == 4
    found.done(found.entries[0])
    assert found.cursor == 6
    assert [e.seq for e in found.waiting()] == [7]


def test_follow_ups_stop_at_the_first_control():
    found = box(5, 6, 8)
    chat = handle("x", 7).message.chat
    cancel = CancelTurn(session_id=SessionId("s"), input_seq=7, chat=chat)
    found.entries.insert(2, inbox.Entry(seq=7, input=cancel))
    assert [e.seq for e in found.follow_ups()] == [5, 6]


def test_history_says_which_inputs_were_consumed():
    events: list[HistoryEvent] = [
        TurnStarted(turn_id=T1, input_seq=3),
        UserMessage(turn_id=T1, text="a", sender=ADA, follow_ups=[4, 5]),
        TurnFinished(turn_id=T1, outcome="cancelled", cancel_seq=6),
        TurnStarted(turn_id=T2, input_seq=9, continues=T1),
    ]
    assert inbox.consumed(events) == {3, 4, 5, 6, 9}


def test_a_cut_or_recoverably_failed_turn_can_continue():
    started = TurnStarted(turn_id=T1, input_seq=1)
    failed = TurnFinished(turn_id=T1, outcome="failed", can_continue=True)
    answered = TurnFinished(turn_id=T1, outcome="answered")
    assert status.can_continue([started])
    assert status.can_continue([started, failed])
    assert not status.can_continue([started, answered])
    assert not status.can_continue([])


def test_the_status_of_a_session_nobody_holds_comes_from_its_head():
    session = SessionId("s")
    assert status.of_head(session, Held(head=Head(), revision=0)).state == "new"
    cut = Head(turns=3, journal=Journal(turn_id=T1, phase="calling_model"))
    found = status.of_head(session, Held(head=cut, revision=7))
    assert (found.state, found.activity, found.turns) == ("running", "recovering", 3)
    broken = status.of_head(session, Held(head=Head(broken="event 4"), revision=2))
    assert (broken.state, broken.broken_reason) == ("broken", "event 4")


async def test_a_cancel_abandons_the_work_at_once():
    cancel = asyncio.Event()
    started = asyncio.Event()
    finished: list[str] = []

    async def slow() -> str:
        started.set()
        await asyncio.sleep(30)
        finished.append("no")
        return "late"

    waiting = asyncio.ensure_future(tool_batch.until_cancelled(cancel, slow()))
    await started.wait()
    cancel.set()
    with pytest.raises(tool_batch.TurnCancelledError):
        await waiting
    assert finished == []


async def test_stopping_the_waiter_stops_the_work_too():
    work_cancelled = asyncio.Event()

    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            work_cancelled.set()
            raise

    waiting = asyncio.ensure_future(tool_batch.until_cancelled(asyncio.Event(), slow()))
    await started.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    async with asyncio.timeout(1):
        await work_cancelled.wait()
