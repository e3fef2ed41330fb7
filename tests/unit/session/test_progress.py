"""A turn's progress (SPEC §12.6, §12.7): the panel's snapshots, paced at the source, and the
answer as it streams; with a manual clock and a publisher that records."""

from datetime import UTC, datetime, timedelta

import msgspec

from services.session import endings, turn_loop
from services.session.progress import Progress, Target
from services.session.providers.protocol import CallStarted, ReasoningDelta, Retrying, TextDelta
from shared import subjects
from shared.ids import ConversationId, ToolCallId, TurnId
from shared.messages.contract import Chat
from shared.messages.history import ToolCall, ToolResult
from shared.messages.outbound import ShowProgress, StreamText, ToolLine
from tests.kit.clocks import ManualClock

TURN = TurnId("tg_7_fg1_t1")
PRIVATE = Chat(conversation_id=ConversationId("tg_7"), channel="telegram", kind="private")
GROUP = Chat(conversation_id=ConversationId("tg_8"), channel="telegram", kind="group")


class Outputs:
    def __init__(self) -> None:
        self.sent: list[ShowProgress | StreamText] = []

    async def send(self, output: ShowProgress | StreamText) -> None:
        self.sent.append(output)

    @property
    def panels(self) -> list[ShowProgress]:
        return [o for o in self.sent if isinstance(o, ShowProgress)]

    @property
    def texts(self) -> list[StreamText]:
        return [o for o in self.sent if isinstance(o, StreamText)]


def progress(
    clock: ManualClock, outputs: Outputs, *, chat: Chat = PRIVATE, **changes: object
) -> Progress:
    target = Target(
        chat=chat,
        turn_id=TURN,
        model="main",
        started_at=datetime.now(UTC),
        streams=chat.kind == "private",
    )
    return Progress(msgspec.structs.replace(target, **changes), outputs.send, clock)


def call(number: int, command: str) -> ToolCall:
    arguments = f'{{"command": "{command}"}}'
    return ToolCall(
        call_id=ToolCallId(f"c1_1_{number}"),
        provider_call_id=f"call_{number}",
        name="shell",
        arguments=arguments,
    )


def result(number: int, *, is_error: bool = False) -> ToolResult:
    return ToolResult(
        call_id=ToolCallId(f"c1_1_{number}"), tool="shell", content="{}", is_error=is_error
    )


async def test_a_quick_text_turn_publishes_no_snapshot_at_all():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs, streams=False)
    shown.model_call()
    shown.on_event(ReasoningDelta(text="hmm"))
    shown.on_event(TextDelta(text="Hello."))
    shown.answered("main")
    clock.advance(2.9)
    await shown.end("done")
    assert outputs.sent == []
    assert clock.pending == 0


async def test_the_first_batch_shows_at_once_and_the_ending_counts_the_calls():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs)
    shown.model_call()
    shown.answered("main")
    shown.batch_started([call(0, "echo hi"), call(1, "false")], "Let me look.\n  Then fix it.")
    await shown.settled()
    [first] = outputs.panels
    assert first.has_batch
    assert first.phase == "tools"
    assert first.tools == [
        ToolLine(tool="shell", brief="echo hi", state="running"),
        ToolLine(tool="shell", brief="false", state="running"),
    ]
    assert (first.calls, first.tools_done, first.preamble) == (2, 0, "Let me look. Then fix it.")
    shown.call_settled(result(0))
    shown.batch_settled([result(0), result(1, is_error=True)])
    await shown.settled()
    assert len(outputs.panels) == 1  # within 0.5 s of the last: paced
    clock.advance(0.5)
    await shown.settled()
    settled = outputs.panels[-1]
    assert [line.state for line in settled.tools] == ["done", "failed"]
    assert settled.tools_done == 2
    shown.model_call()
    await shown.end("done")
    last = outputs.panels[-1]
    assert (last.ending, last.calls, last.phase) == ("done", 2, "thinking")
    assert [p.seq for p in outputs.panels] == [1, 2, 3]
    assert [p.out_id for p in outputs.panels] == [
        subjects.progress_out_id(TURN, seq) for seq in (1, 2, 3)
    ]


async def test_after_3_s_the_panel_is_due_and_follows_the_phases_paced():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs, streams=False)
    shown.model_call()
    clock.advance(2.99)
    await shown.settled()
    assert outputs.panels == []
    clock.advance(0.01)
    await shown.settled()
    assert [(p.phase, p.has_batch) for p in outputs.panels] == [("thinking", False)]
    shown.on_event(TextDelta(text="Well"))
    shown.on_event(CallStarted(name="shell"))  # it was a preamble
    shown.compacting()
    shown.follow_ups(2)
    shown.warn("⚠️ main is unavailable (HTTP 503); using spare for this turn.")
    shown.answered("spare")
    clock.advance(0.5)
    await shown.settled()
    assert len(outputs.panels) == 2  # five changes, one snapshot
    latest = outputs.panels[-1]
    assert (latest.phase, latest.new_messages, latest.model) == ("compacting", 2, "spare")
    assert latest.warning == "main is unavailable (HTTP 503); using spare for this turn."
    await shown.end("failed", "HTTP 503 from 127.0.0.1 after 4 tries")
    assert (outputs.panels[-1].ending, outputs.panels[-1].reason) == (
        "failed",
        "HTTP 503 from 127.0.0.1 after 4 tries",
    )


async def test_the_ending_carries_the_newest_state_even_when_a_change_was_paced():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs, streams=False)
    shown.batch_started([call(0, "sleep 1")], "")
    await shown.settled()
    shown.batch_settled([result(0)])  # paced: not out yet
    await shown.end("cancelled")
    assert len(outputs.panels) == 2
    assert outputs.panels[-1].ending == "cancelled"
    assert outputs.panels[-1].tools[0].state == "done"
    assert clock.pending == 0


async def test_a_turn_taken_over_shows_at_once_what_it_did_and_that_it_resumes():
    clock, outputs = ManualClock(), Outputs()
    started_at = datetime.now(UTC) - timedelta(seconds=1)  # the panel's clock goes on
    shown = progress(
        clock, outputs, started_at=started_at, first_seq=2_000_001, is_resumed=True, calls_before=3
    )
    clock.advance(0)
    await shown.settled()
    [resuming] = outputs.panels
    assert (resuming.seq, resuming.has_batch, resuming.calls) == (2_000_001, True, 3)
    assert resuming.warning == "Interrupted by a restart — resuming…"
    assert resuming.started_at == started_at
    shown.model_call()
    shown.on_event(TextDelta(text="Done."))  # the next update: the warning is gone
    await shown.end("done")
    assert [(p.seq, p.ending, p.warning) for p in outputs.panels[1:]] == [(2_000_002, "done", "")]


async def test_a_turn_interrupted_too_often_ends_its_panel_so():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs, is_resumed=True)
    await shown.end("interrupted")
    assert [p.ending for p in outputs.panels] == ["interrupted"]


async def test_a_background_session_shows_nothing():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs, is_shown=False)
    shown.model_call()
    shown.on_event(TextDelta(text="x" * 1000))
    shown.batch_started([call(0, "ls")], "")
    await shown.settled()
    clock.advance(10)
    await shown.settled()
    assert outputs.sent == []
    await shown.end("done")
    assert outputs.sent == []


async def test_enough_text_streams_at_once_then_at_most_once_a_second():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs)
    shown.model_call()
    shown.on_event(TextDelta(text="a" * 299))
    await shown.settled()
    assert outputs.texts == []
    shown.on_event(TextDelta(text="b"))
    await shown.settled()
    assert [len(t.text) for t in outputs.texts] == [300]
    shown.on_event(TextDelta(text="c" * 50))
    clock.advance(0.9)
    await shown.settled()
    assert len(outputs.texts) == 1
    clock.advance(0.1)
    await shown.settled()
    assert outputs.texts[-1].text == "a" * 299 + "b" + "c" * 50
    shown.on_event(TextDelta(text="d"))
    shown.answered("main")  # the answer is here: what waits is not streamed
    await shown.end("done")
    assert len(outputs.texts) == 2
    assert outputs.texts[-1].out_id == subjects.stream_out_id(TURN, outputs.texts[-1].seq)


async def test_a_slow_short_answer_streams_after_its_first_second():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs)
    shown.model_call()
    shown.on_event(TextDelta(text="Thinking about"))
    clock.advance(0.99)
    await shown.settled()
    assert outputs.texts == []
    shown.on_event(TextDelta(text=" it"))
    clock.advance(0.01)
    await shown.settled()
    assert [t.text for t in outputs.texts] == ["Thinking about it"]


async def test_a_preamble_stops_streaming_and_a_retry_starts_over():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs)
    shown.model_call()
    shown.on_event(TextDelta(text="I will run it."))
    shown.on_event(CallStarted(name="shell"))
    clock.advance(5)
    await shown.settled()
    assert outputs.texts == []
    shown.model_call()
    shown.on_event(TextDelta(text="partial " * 50))
    await shown.settled()
    shown.on_event(Retrying(attempt=1))
    shown.on_event(TextDelta(text="The answer."))
    clock.advance(1)
    await shown.settled()
    assert outputs.texts[-1].text == "The answer."
    await shown.end("done")


async def test_streamed_text_is_cut_to_4096_utf16_units_and_not_repeated():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs)
    shown.model_call()
    shown.on_event(TextDelta(text="a" + "😀" * 2100))  # each emoji takes two units
    await shown.settled()
    [streamed] = outputs.texts
    assert len(streamed.text.encode("utf-16-le")) == 2 * 4095  # no half of a pair
    shown.on_event(TextDelta(text="more"))
    clock.advance(2)
    await shown.end("done")
    assert len(outputs.texts) == 1


async def test_groups_and_streams_turned_off_do_not_stream():
    clock, outputs = ManualClock(), Outputs()
    shown = progress(clock, outputs, chat=GROUP)
    shown.model_call()
    shown.on_event(TextDelta(text="x" * 1000))
    clock.advance(2)
    await shown.end("done")
    assert outputs.texts == []


def test_every_way_a_turn_ends_has_its_panel_ending():
    def ending(**fields: object) -> turn_loop.Ending:
        return msgspec.structs.replace(turn_loop.Ending(text="t"), **fields)

    assert endings.for_panel(ending()) == ("done", "")
    assert endings.for_panel(ending(outcome="cancelled")) == ("cancelled", "")
    assert endings.for_panel(ending(outcome="failed", error="round_limit")) == ("round_limit", "")
    assert endings.for_panel(ending(outcome="failed", error="restarts")) == ("interrupted", "")
    provider = ending(outcome="failed", error="provider", reason="HTTP 503 " + "x" * 300)
    kind, reason = endings.for_panel(provider)
    assert (kind, len(reason)) == ("failed", 160)
    assert endings.for_panel(ending(outcome="failed", error="empty_response")) == (
        "failed",
        "the model returned an empty answer twice",
    )
