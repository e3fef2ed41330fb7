"""A history with unanswered tool calls is closed before it goes to the model."""

import msgspec

from services.session.history_repair import UNANSWERED, closed
from shared.ids import ToolCallId, TurnId
from shared.messages.contract import Sender
from shared.messages.history import (
    AssistantMessage,
    HistoryEvent,
    ToolCall,
    ToolResult,
    ToolResults,
    TurnFinished,
    UserMessage,
)

T1 = TurnId("s_fg1_t1")


def user(text: str) -> UserMessage:
    return UserMessage(turn_id=T1, text=text, sender=Sender(display_name="Ada"))


def asks(*call_ids: str) -> AssistantMessage:
    calls = [
        ToolCall(call_id=ToolCallId(c), provider_call_id=f"p{c}", name="shell", arguments="{}")
        for c in call_ids
    ]
    return AssistantMessage(turn_id=T1, text="", tool_calls=calls, model="m")


def answered(*call_ids: str) -> ToolResults:
    results = [ToolResult(call_id=ToolCallId(c), tool="shell", content="{}") for c in call_ids]
    return ToolResults(turn_id=T1, results=results)


def test_a_closed_history_is_left_as_it_is():
    events: list[HistoryEvent] = [
        user("hi"),
        asks("c1"),
        answered("c1"),
        AssistantMessage(turn_id=T1, text="ok", model="m"),
    ]
    assert closed(events) == events


def test_calls_cut_off_by_a_failed_turn_get_error_results_before_the_next_message():
    events: list[HistoryEvent] = [
        user("hi"),
        asks("c1", "c2"),
        TurnFinished(turn_id=T1, outcome="failed"),
        user("again"),
    ]
    repaired = closed(events)
    assert repaired[:2] == events[:2]
    assert isinstance(repaired[2], ToolResults)
    assert [r.call_id for r in repaired[2].results] == ["c1", "c2"]
    assert all(r.is_error and r.content == UNANSWERED for r in repaired[2].results)
    assert repaired[3:] == events[2:]
    assert msgspec.json.decode(UNANSWERED)["error_kind"] == "interrupted_by_restart"


def test_calls_at_the_very_end_are_closed_too():
    repaired = closed([user("hi"), asks("c1")])
    assert isinstance(repaired[-1], ToolResults)
    assert repaired[-1].results[0].call_id == "c1"


def test_a_batch_too_large_for_one_bus_message_is_cut_to_fit():
    from services.session.tool_batch import MAX_RESULTS_BYTES, fitted

    big = "é" * 100_000  # two bytes each in UTF-8
    results = [
        ToolResult(call_id=ToolCallId(f"c{n}"), tool="file_read", content=big) for n in range(8)
    ]
    small = ToolResult(call_id=ToolCallId("c9"), tool="ls", content='{"entries": 1}')
    cut = fitted([*results, small])
    assert len(msgspec.json.encode(cut)) <= MAX_RESULTS_BYTES
    assert [r.call_id for r in cut] == [*(r.call_id for r in results), "c9"]
    assert cut[-1] == small  # the short result is kept whole
    assert sum("chars omitted" in r.content for r in cut) >= 4  # 1.6 MB had to lose half
    assert fitted([small]) == [small]
