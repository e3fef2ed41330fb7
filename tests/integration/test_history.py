"""Session history against a real nats-server: fenced appends, retried appends, bad events."""

import pytest

from services.session import history_store
from shared import bus as sc_bus
from shared import subjects
from shared.ids import SessionId, TurnId
from shared.messages.events import EVENT, BadMessage
from shared.messages.history import HISTORY, TurnStarted

SESSION = SessionId("cli_h_fg1")


def started(n: int) -> TurnStarted:
    return TurnStarted(turn_id=TurnId(f"{SESSION}_t{n}"), input_seq=n)


async def test_a_second_writer_is_fenced_instead_of_interleaving_or_being_dropped(bus, nats_access):
    async with sc_bus.connected(nats_access, "session") as conn:
        first = await history_store.load(conn, SESSION)
        second = await history_store.load(conn, SESSION)
        await first.append(started(1))
        with pytest.raises(history_store.FencedError, match="did not append"):
            await second.append(started(2))
        again = await history_store.load(conn, SESSION)
        await again.append(started(2))
        with pytest.raises(history_store.FencedError):
            await first.append(started(3))  # the first writer is stale now too
    stored = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    assert stored == [started(1), started(2)]
    assert again.events == stored


async def test_an_append_whose_first_attempt_was_stored_counts_once(bus, nats_access):
    async with sc_bus.connected(nats_access, "session") as conn:
        history = await history_store.load(conn, SESSION)
        msg_id = subjects.history_msg_id(SESSION, 0, history.writer)
        expected = {subjects.EXPECTED_LAST_SUBJECT_SEQ_HEADER: "0"}
        lost = await sc_bus.publish(  # stored, but its ack never came back
            conn, subjects.history(SESSION), started(1), msg_id=msg_id, headers=expected
        )
        await history.append(started(1))  # the retry
        await history.append(started(2))
    stored = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    assert stored == [started(1), started(2)]
    assert history.last_seq == lost.seq + 1


async def test_an_undecodable_history_event_is_reported_with_its_sequence(bus, nats_access):
    await bus.publish(subjects.history(SESSION), started(1))
    junk_seq = await bus.publish(subjects.history(SESSION), b'{"kind": "turn_started"}')
    await bus.watch(subjects.BAD_MESSAGE_EVENT)
    async with sc_bus.connected(nats_access, "session") as conn:
        history = await history_store.load(conn, SESSION)
        fact = await bus.next(subjects.BAD_MESSAGE_EVENT, EVENT)
    assert history.events == [started(1)]
    assert history.last_seq == junk_seq  # the next append is fenced after the junk, not before
    assert isinstance(fact, BadMessage)
    assert (fact.subject, fact.stream_seq) == (subjects.history(SESSION), junk_seq)
