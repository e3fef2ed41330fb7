"""Every prefix of a session's history rebuilds into a request the OpenAI chat wire accepts.

A session owner may die after any event, so any prefix of a log is a history a later owner reads.
`history_repair.closed` then `openai_chat.to_messages` must turn each one into messages a provider
takes: every tool call answered by exactly one tool message, before any other message.
"""

import itertools
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.session.history_repair import UNANSWERED, closed
from services.session.providers.openai_chat import to_messages
from shared.ids import SessionId, ToolCallId, TurnId
from shared.messages.contract import Sender
from shared.messages.history import (
    AssistantMessage,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolCall,
    ToolResult,
    ToolResults,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from tests.kit.llm_api import WireMessage

SYSTEM = "You are Stellaclaw."
T0 = TurnId("s_fg1_t0")
ADA = Sender(display_name="Ada")
CANCELLED = "[Cancelled] The user cancelled the previous turn."
CANCELLED_RESULT = '{"error":"cancelled by user","cancelled":true}'
NOTICES = [
    "[Subagent Finished] sa1: finished — call subagent_join to read the result.",
    "[Runtime Restarted] Shell sessions and downloads started before 14:02 UTC have ended.",
    "[Time: 2025-06-01 14:02 UTC · 2.5 h since the previous message]",
]
# Servers reuse ids across responses, and one that sends none leaves the id empty.
PROVIDER_IDS = st.sampled_from(["call_a", "call_b", "functions.shell:0", ""])
# Within a turn: what follows a batch's calls.
AFTER_CALLS = st.sampled_from(["results", "results", "follow_up", "resumed", "cut", "cancel"])
# How a turn ends once its batches are done.
ENDINGS = st.sampled_from(["answer", "answer", "cancel", "fail", "cut"])
Outcome = Literal["answered", "cancelled", "failed"]
WIRE: msgspec.json.Decoder[list[WireMessage]] = msgspec.json.Decoder(list[WireMessage])


@dataclass
class Writer:
    """Appends events the way a session owner does; `draw` makes its choices."""

    draw: st.DrawFn
    events: list[HistoryEvent] = field(default_factory=list)
    turn_id: TurnId = T0  # before the first TurnStarted
    turns: int = 0
    rounds: int = 0
    said: int = 0
    may_continue: bool = False  # the last turn failed recoverably or was cut

    def say(self, prefix: str = "") -> str:
        self.said += 1
        return f"{prefix}message {self.said}"

    def start(self) -> None:
        continued = self.turn_id if self.may_continue and self.draw(st.booleans()) else None
        self.turns += 1
        self.rounds = 0
        self.turn_id = TurnId(f"s_fg1_t{self.turns}")
        self.events.append(TurnStarted(turn_id=self.turn_id, input_seq=0, continues=continued))
        if self.draw(st.booleans()):
            self.notice(self.draw(st.sampled_from(NOTICES)))
        if continued is None:
            self.events.append(UserMessage(turn_id=self.turn_id, text=self.say(), sender=ADA))

    def notice(self, text: str) -> None:
        tag = text[1 : text.index("]")].split(":")[0]
        self.events.append(Notice(turn_id=self.turn_id, tag=tag, text=text))

    def calls(self) -> list[ToolCall]:
        self.rounds += 1
        calls = [
            ToolCall(
                call_id=ToolCallId(f"c{self.turns}_{self.rounds}_{index}"),
                provider_call_id=self.draw(PROVIDER_IDS),
                name="shell",
                arguments='{"command":"ls"}',
            )
            for index in range(self.draw(st.integers(1, 3)))
        ]
        text = self.draw(st.sampled_from(["", "Looking.", " "]))
        self.assistant(text, calls)
        return calls

    def assistant(self, text: str, calls: list[ToolCall]) -> None:
        self.events.append(
            AssistantMessage(turn_id=self.turn_id, text=text, tool_calls=calls, model="m")
        )

    def results(self, calls: list[ToolCall], finished: int) -> None:
        """Results in call order; the calls from `finished` on were cancelled."""
        results = [
            ToolResult(
                call_id=call.call_id,
                tool=call.name,
                content=f'{{"output":"{call.call_id}"}}' if n < finished else CANCELLED_RESULT,
                is_error=n >= finished,
            )
            for n, call in enumerate(calls)
        ]
        self.events.append(ToolResults(turn_id=self.turn_id, results=results))

    def cancel(self) -> None:
        """`/cancel`: the notice, the messages queued before it (SPEC §3.6), the turn's end."""
        self.notice(CANCELLED)
        if self.draw(st.booleans()):
            text = self.say("[Queued User Updates]\n")
            self.events.append(
                UserMessage(turn_id=self.turn_id, text=text, sender=ADA, follow_ups=[8, 9])
            )
        self.finish("cancelled")

    def finish(self, outcome: Outcome, *, can_continue: bool = False) -> None:
        finished = TurnFinished(turn_id=self.turn_id, outcome=outcome, can_continue=can_continue)
        self.events.append(finished)
        self.may_continue = can_continue


def batch(writer: Writer) -> bool:
    """One batch: calls, then their results unless a cut or a cancel. False: the turn is over."""
    calls = writer.calls()
    match writer.draw(AFTER_CALLS):
        case "results":
            writer.results(calls, finished=len(calls))
        case "follow_up":  # appended after the batch's results (SPEC §3.5)
            writer.results(calls, finished=len(calls))
            text = writer.say("[Interrupted Follow-up]\n")
            writer.events.append(
                UserMessage(turn_id=writer.turn_id, text=text, sender=ADA, follow_ups=[7])
            )
        case "resumed":  # cut, and the turn went on without the batch's results
            pass
        case "cut":  # the owner died; the turn was given up after repeated restarts, or not
            writer.may_continue = True
            if writer.draw(st.booleans()):
                writer.finish("failed", can_continue=True)
            return False
        case _:  # `/cancel` while the batch ran
            writer.results(calls, finished=writer.draw(st.integers(0, len(calls))))
            writer.cancel()
            return False
    return True


def end(writer: Writer) -> None:
    match writer.draw(ENDINGS):
        case "answer":
            writer.assistant(writer.say("Answer to "), [])
            writer.finish("answered")
        case "cancel":  # `/cancel` while the model was called
            writer.cancel()
        case "fail":
            writer.finish("failed", can_continue=True)
        case _:
            writer.may_continue = True


@st.composite
def session_logs(draw: st.DrawFn) -> list[HistoryEvent]:
    started = SessionStarted(session_id=SessionId("s_fg1"), session_type="foreground", model="m")
    writer = Writer(draw=draw, events=[started])
    for _ in range(draw(st.integers(1, 4))):
        writer.start()
        rounds = draw(st.integers(0, 3))
        if all(batch(writer) for _ in range(rounds)):
            end(writer)
        if draw(st.booleans()):
            writer.notice(draw(st.sampled_from(NOTICES)))  # between turns
    return writer.events


def assert_wire_consistent(messages: list[WireMessage]) -> None:
    assert messages[0].role == "system"
    assert messages[0].content == SYSTEM
    unanswered: set[str] = set()
    for previous, message in itertools.pairwise(messages):
        assert message.role in ("user", "assistant", "tool")
        if message.role == "tool":
            call_id = message.tool_call_id
            assert previous.role in ("assistant", "tool")
            assert call_id in unanswered, f"{call_id!r} answers no open call of the assistant"
            unanswered.remove(call_id)
        else:
            assert not unanswered, f"{sorted(unanswered)} unanswered before a {message.role}"
        if message.role == "assistant":
            ids = [call.call_id for call in message.tool_calls or []]
            assert all(ids), f"an assistant message with an empty call id: {ids!r}"
            assert len(set(ids)) == len(ids), f"call ids repeat in one message: {ids!r}"
            assert ids or message.text.strip(), "an assistant message with nothing in it"
            unanswered = set(ids)
    assert not unanswered, f"{sorted(unanswered)} unanswered at the end"


def added_by_closed(stored: list[HistoryEvent], repaired: list[HistoryEvent]) -> list[HistoryEvent]:
    """The events `closed` added; it must keep every stored one, in order."""
    added: list[HistoryEvent] = []
    rest = iter(stored)
    expected = next(rest, None)
    for event in repaired:
        if event is expected:
            expected = next(rest, None)
        else:
            added.append(event)
    assert expected is None, f"closed() lost {expected!r}"
    return added


def is_closed(events: list[HistoryEvent]) -> bool:
    """Every assistant's calls are answered by the ToolResults right after it."""
    for event, after in zip(events, [*events[1:], None], strict=False):
        if isinstance(event, AssistantMessage) and event.tool_calls:
            asked = [call.call_id for call in event.tool_calls]
            if not isinstance(after, ToolResults) or [r.call_id for r in after.results] != asked:
                return False
    return True


def said(events: list[HistoryEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, UserMessage | Notice)]


def answered(events: list[HistoryEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, AssistantMessage)]


@settings(max_examples=300, deadline=None)
@given(session_logs())
def test_every_prefix_of_a_log_rebuilds_into_a_request_the_wire_accepts(log):
    for size in range(len(log) + 1):
        stored = log[:size]
        repaired = closed(stored)
        messages = WIRE.decode(msgspec.json.encode(to_messages(SYSTEM, repaired)))

        assert_wire_consistent(messages)
        assert [m.text for m in messages if m.role == "user"] == said(stored)
        assert [m.text for m in messages if m.role == "assistant"] == answered(stored)
        for added in added_by_closed(stored, repaired):
            assert isinstance(added, ToolResults)
            assert all(r.is_error and r.content == UNANSWERED for r in added.results)
        assert closed(repaired) == repaired
        if is_closed(stored):
            assert repaired == stored


# --- the cases the property relies on, spelt out ------------------------------------------------

T1 = TurnId("s_fg1_t1")


def call(call_id: str, provider_call_id: str) -> ToolCall:
    return ToolCall(
        call_id=ToolCallId(call_id), provider_call_id=provider_call_id, name="shell", arguments="{}"
    )


def test_a_cancel_notice_after_tool_results_is_its_own_user_message():
    calls = [call("c1_1_0", "call_a")]
    events: list[HistoryEvent] = [
        TurnStarted(turn_id=T1, input_seq=3),
        UserMessage(turn_id=T1, text="list it", sender=ADA),
        AssistantMessage(turn_id=T1, text="", tool_calls=calls, model="m"),
        ToolResults(
            turn_id=T1,
            results=[ToolResult(call_id=ToolCallId("c1_1_0"), tool="shell", content="{}")],
        ),
        Notice(turn_id=T1, tag="Cancelled", text=CANCELLED),
        TurnFinished(turn_id=T1, outcome="cancelled"),
    ]

    messages = to_messages(SYSTEM, closed(events))

    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[-1] == {"role": "user", "content": CANCELLED}


def test_a_continued_turn_and_folded_follow_ups_add_nothing_but_the_text():
    t2 = TurnId("s_fg1_t2")
    events: list[HistoryEvent] = [
        TurnStarted(turn_id=T1, input_seq=3),
        UserMessage(turn_id=T1, text="[Queued User Updates]\n…", sender=ADA, follow_ups=[4, 5]),
        TurnFinished(turn_id=T1, outcome="failed", error="provider", can_continue=True),
        TurnStarted(turn_id=t2, input_seq=6, continues=T1),
    ]

    assert to_messages(SYSTEM, closed(events)) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "[Queued User Updates]\n…"},
    ]


def test_calls_without_distinct_provider_ids_go_under_ours():
    calls = [call("c1_1_0", ""), call("c1_1_1", "call_a"), call("c1_1_2", "call_a")]
    events: list[HistoryEvent] = [
        AssistantMessage(turn_id=T1, text="", tool_calls=calls, model="m")
    ]

    messages = WIRE.decode(msgspec.json.encode(to_messages(SYSTEM, closed(events))))

    assert [c.call_id for c in messages[1].tool_calls or []] == ["c1_1_0", "c1_1_1", "c1_1_2"]
    assert [m.tool_call_id for m in messages[2:]] == ["c1_1_0", "c1_1_1", "c1_1_2"]


def test_an_assistant_message_with_nothing_in_it_is_left_out():
    events: list[HistoryEvent] = [
        UserMessage(turn_id=T1, text="hi", sender=ADA),
        AssistantMessage(turn_id=T1, text=" ", model="m"),
    ]

    assert [m["role"] for m in to_messages(SYSTEM, events)] == ["system", "user"]
