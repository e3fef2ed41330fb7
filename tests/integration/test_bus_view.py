"""`stellaclaw bus tail` and `bus replay` on a real bus, logged in as the read-only observer:
the live flow and stored messages as lines, filters, hidden content, undecodable payloads, a
session's transcript; and what the observer still cannot do."""

import asyncio

import msgspec
import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig

from services.launcher import bus_lines, bus_reads
from services.launcher.bus_lines import Filters
from services.launcher.bus_reading import Replay, Tail, replay, tail
from shared import subjects
from shared.bus import connected
from shared.errors import ConfigError
from shared.ids import ConversationId, SessionId, ToolCallId, TurnId
from shared.messages.contract import Sender
from shared.messages.history import (
    AssistantMessage,
    SessionStarted,
    ToolCall,
    ToolResult,
    ToolResults,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from tests.kit.nats import connect_as
from tests.kit.waiting import eventually
from tests.unit.shared.samples import message_received

ADA = ConversationId("cli_ada")
BOB = ConversationId("cli_bob")
SESSION = SessionId("cli_ada_fg1")
TURN = TurnId("t1")
REFUSED = (TimeoutError, NatsTimeoutError)
DELIVERY = subjects.durable("delivery", "telegram")


async def publish(bus, subject: str, payload: bytes, conv: str, trace: str = "tr1") -> None:
    """As a service publishes: with the trace and conversation headers."""
    headers = {subjects.TRACE_HEADER: trace, subjects.CONV_HEADER: conv}
    await bus.js.publish(subject, payload, headers=headers)


def encoded(message: msgspec.Struct) -> bytes:
    return msgspec.json.encode(message)


async def tailing(nats_access, request: Tail, lines: list[str]) -> asyncio.Task[None]:
    """`bus tail` running on an observer login, subscribed before this returns."""
    ready = asyncio.Event()

    async def run() -> None:
        async with connected(nats_access, "bus_tail", role="observer") as conn:
            await tail(conn.nc, request, lines.append, asyncio.Event(), ready.set)

    task = asyncio.create_task(run())
    await asyncio.wait_for(ready.wait(), 10)
    return task


async def test_tail_prints_a_line_per_message_with_content_hidden(bus, nats_access):
    lines: list[str] = []
    task = await tailing(nats_access, Tail(count=3), lines)
    await publish(bus, subjects.inbound("cli", ADA), encoded(message_received(ADA, "secret")), ADA)
    await publish(bus, subjects.inbound("cli", BOB), b'{"kind": "message_received"}', BOB, "tr2")
    await publish(bus, subjects.history(SESSION), b"not json", ADA, "tr3")
    await asyncio.wait_for(task, 10)  # three lines: `--count 3` ends it
    received, missing, garbage = lines
    assert f" {subjects.inbound('cli', ADA)} message_received trace=tr1 from" in received
    assert received.endswith("from Ada: 6 chars")
    assert "secret" not in received
    assert "undecodable: Object missing" in missing  # cut at 100 columns
    assert f"{subjects.inbound('cli', BOB)} message_received trace=tr2 " in missing
    assert f"{subjects.history(SESSION)} ? conv={ADA} trace=tr3 undecodable:" in garbage
    assert all(len(line) <= bus_lines.WIDTH for line in lines)


async def test_tail_filters_by_conversation_and_kind_and_shows_content_when_asked(bus, nats_access):
    lines: list[str] = []
    filters = Filters(conv=ADA, kinds=frozenset({"message_received"}), has_content=True)
    task = await tailing(nats_access, Tail(subject=subjects.APP_ALL, filters=filters), lines)
    await publish(bus, subjects.inbound("cli", BOB), encoded(message_received(BOB, "bob's")), BOB)
    started = SessionStarted(session_id=SESSION, session_type="foreground", model="main")
    await publish(bus, subjects.history(SESSION), encoded(started), ADA)
    await publish(
        bus, subjects.inbound("cli", ADA), encoded(message_received(ADA, "hi\nthere")), ADA
    )
    await eventually(lambda: lines, what="Ada's message")
    task.cancel()
    [line] = lines
    assert line.endswith('from Ada: "hi\\nthere"')


async def stored_lines(nats_access, request: Replay) -> tuple[int, list[str]]:
    lines: list[str] = []
    async with connected(nats_access, "bus_replay", role="observer") as conn:
        code = await replay(conn.nc, request, lines.append)
    return code, lines


async def test_replay_prints_stored_messages_by_conversation_and_since_a_time(bus, nats_access):
    for conv, text in ((ADA, "one"), (BOB, "two"), (ADA, "three")):
        await publish(
            bus, subjects.inbound("cli", conv), encoded(message_received(conv, text)), conv
        )
    code, lines = await stored_lines(nats_access, Replay(stream=subjects.IN_STREAM))
    assert code == 0
    assert [line.split(" ")[0] for line in lines] == ["#1", "#2", "#3"]
    assert all("message_received" in line for line in lines)
    content = Filters(conv=ADA, has_content=True)
    _, mine = await stored_lines(nats_access, Replay(stream=subjects.IN_STREAM, filters=content))
    assert [line.rsplit(": ", 1)[1] for line in mine] == ['"one"', '"three"']
    third = await bus_reads.stored(bus.nc, subjects.IN_STREAM, {"seq": 3})
    assert third is not None
    later = Replay(stream=subjects.IN_STREAM, since=third.time)
    _, recent = await stored_lines(nats_access, later)
    assert [line.split(" ")[0] for line in recent] == ["#3"]


async def test_replay_of_a_session_is_its_transcript(bus, nats_access):
    events = [
        SessionStarted(session_id=SESSION, session_type="foreground", model="main"),
        TurnStarted(turn_id=TURN, input_seq=4),
        UserMessage(turn_id=TURN, text="list files", sender=Sender(display_name="Ada")),
        AssistantMessage(
            turn_id=TURN,
            text="",
            model="gpt-test",
            tool_calls=[
                ToolCall(call_id=ToolCallId("c1"), provider_call_id="p1", name="ls", arguments="{}")
            ],
        ),
        ToolResults(
            turn_id=TURN,
            results=[ToolResult(call_id=ToolCallId("c1"), tool="ls", content='"a.txt"')],
        ),
        AssistantMessage(turn_id=TURN, text="One file:\na.txt", model="gpt-test"),
        TurnFinished(turn_id=TURN, outcome="answered"),
    ]
    for event in events:
        await publish(bus, subjects.history(SESSION), encoded(event), ADA)
    await publish(bus, subjects.history("cli_bob_fg1"), encoded(events[0]), BOB)
    await publish(bus, subjects.history(SESSION), b'{"kind": "notice"}', ADA)
    shown = Replay(
        stream=subjects.HISTORY_STREAM, session=SESSION, filters=Filters(has_content=True)
    )
    code, lines = await stored_lines(nats_access, shown)
    assert code == 0
    text = "\n".join(line.split(" ", 3)[-1] if line.startswith("#") else line for line in lines)
    assert text == "\n".join(
        [
            f"session {SESSION}: foreground, model main",
            "",
            f"turn {TURN} (input #4)",
            "Ada:",
            "    list files",
            "assistant (gpt-test, 0 in / 0 out tokens):",
            "    → ls c1: {}",
            "result ls c1: ok",
            '    "a.txt"',
            "assistant (gpt-test, 0 in / 0 out tokens):",
            "    One file:",
            "    a.txt",
            f"turn {TURN} answered; 0 in / 0 out tokens",
            "undecodable: Object missing required field `turn_id`",
        ]
    )
    hidden = Replay(stream=subjects.HISTORY_STREAM, session=SESSION)
    _, lines = await stored_lines(nats_access, hidden)
    assert "    (10 chars)" in lines
    assert not any("list files" in line for line in lines)
    missing = Replay(stream=subjects.HISTORY_STREAM, session="cli_nobody_fg1")
    assert await stored_lines(nats_access, missing) == (1, [])


async def test_replay_of_an_unknown_stream_names_the_streams(bus, nats_access):
    with pytest.raises(ConfigError, match=r"no stream 'NOPE' on the bus; streams: .*SC_IN"):
        await stored_lines(nats_access, Replay(stream="NOPE"))


async def test_the_observer_reads_but_cannot_make_a_consumer_or_read_conversation_state(
    bus, nats_access
):
    before = await bus.js.consumer_info(subjects.OUT_STREAM, DELIVERY)
    nc = await connect_as(nats_access, "observer")
    js = nc.jetstream(timeout=1)
    try:
        changed = ConsumerConfig(
            name=DELIVERY,
            durable_name=DELIVERY,
            ack_wait=1.0,
            filter_subject=subjects.outbound_channel("telegram"),
        )
        with pytest.raises(REFUSED):
            await js.add_consumer(subjects.OUT_STREAM, changed)
        with pytest.raises(REFUSED):
            await js.subscribe(subjects.HISTORY_ALL, ordered_consumer=True)
        with pytest.raises(REFUSED):
            await js.get_last_msg(
                "KV_" + subjects.CONV_BUCKET, "$KV." + subjects.CONV_BUCKET + ".x"
            )
        with pytest.raises(REFUSED):
            await js.publish(subjects.inbound("cli", ADA), b"{}", timeout=0.5)
        await publish(bus, subjects.history(SESSION), b"{}", ADA)
        stored = await js.get_msg(subjects.HISTORY_STREAM, seq=1)
        assert stored.data == b"{}"
    finally:
        await nc.close()
    after = await bus.js.consumer_info(subjects.OUT_STREAM, DELIVERY)
    assert after.config.ack_wait == before.config.ack_wait
    assert [c.name for c in await bus.js.consumers_info(subjects.HISTORY_STREAM)] == []
