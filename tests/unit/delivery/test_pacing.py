"""Panel pacing (SPEC §12.6) on a fake clock: gaps, coalescing, refreshes, 429 pauses."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import msgspec
import pytest

from services.delivery import panel
from services.delivery.pacing import PanelPacer
from shared.ids import ConversationId, OutId, TurnId
from shared.messages.contract import Chat
from shared.messages.outbound import ShowProgress, ToolLine

STARTED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_the_first_text_goes_at_once():
    pacer = PanelPacer.for_chat(is_group=False)
    assert pacer.next_due(10.0) is None
    pacer.offer("a")
    assert pacer.next_due(10.0) == 10.0
    assert pacer.take(10.0) == "a"


def test_texts_within_a_gap_are_coalesced_and_the_newest_wins():
    pacer = PanelPacer.for_chat(is_group=False)
    pacer.offer("a")
    pacer.sent(pacer.take(0.0) or "", 0.0)
    for text in ("b", "c", "d"):
        pacer.offer(text)
        assert pacer.take(0.4) is None
    assert pacer.next_due(0.4) == 1.0
    assert pacer.take(1.0) == "d"


def test_groups_wait_4_seconds_between_edits():
    pacer = PanelPacer.for_chat(is_group=True)
    pacer.offer("a")
    pacer.sent(pacer.take(0.0) or "", 0.0)
    pacer.offer("b")
    assert pacer.next_due(1.0) == 4.0
    assert pacer.take(3.9) is None
    assert pacer.take(4.0) == "b"


def test_an_unchanged_panel_is_refreshed_every_30_seconds_until_it_is_final():
    pacer = PanelPacer.for_chat(is_group=False)
    pacer.offer("⚙️ Working · 1s")
    pacer.sent(pacer.take(1.0) or "", 1.0)
    pacer.offer("⚙️ Working · 1s")  # the same text again is no change
    assert pacer.next_due(2.0) == 31.0
    pacer.offer("⚙️ Working · 31s")  # rendered afresh at the due time
    assert pacer.take(31.0) == "⚙️ Working · 31s"
    pacer.sent("⚙️ Working · 31s", 31.0)
    pacer.offer("✅ Done · 40s", is_final=True)
    pacer.sent(pacer.take(40.0) or "", 40.0)
    assert pacer.next_due(100.0) is None


def test_a_429_pauses_edits_then_the_latest_text_follows():
    pacer = PanelPacer.for_chat(is_group=False)
    pacer.offer("a")
    pacer.sent(pacer.take(0.0) or "", 0.0)
    pacer.offer("b")
    assert pacer.take(1.0) == "b"
    pacer.paused(7.0, 1.0)
    pacer.offer("c")
    assert pacer.next_due(2.0) == 8.0
    assert pacer.take(7.9) is None
    assert pacer.take(8.0) == "c"


def test_not_modified_counts_as_sent():
    pacer = PanelPacer.for_chat(is_group=False)
    pacer.offer("a")
    pacer.sent(pacer.take(0.0) or "", 0.0)
    pacer.offer("b")
    pacer.sent(pacer.take(1.0) or "", 1.0)  # Telegram: "message is not modified"
    assert not pacer.has_change
    assert pacer.next_due(2.0) == 31.0  # only the refresh is owed


def test_a_failed_edit_is_tried_again_a_gap_later_not_at_once():
    pacer = PanelPacer.for_chat(is_group=True)
    pacer.offer("a")
    assert pacer.take(0.0) == "a"  # and the edit fails: no sent()
    assert pacer.take(0.1) is None
    assert pacer.next_due(0.1) == 4.0
    assert pacer.take(4.0) == "a"


def test_a_text_offered_while_an_edit_was_in_flight_still_follows():
    pacer = PanelPacer.for_chat(is_group=False)
    pacer.offer("a")
    taken = pacer.take(0.0) or ""
    pacer.offer("b")
    pacer.sent(taken, 0.3)
    assert pacer.has_change
    assert pacer.take(1.0) == "b"


def test_a_forgotten_panel_is_sent_anew_still_paced():
    pacer = PanelPacer.for_chat(is_group=False)
    pacer.offer("a")
    pacer.sent(pacer.take(0.0) or "", 0.0)
    pacer.forget()  # "message to edit not found"
    assert pacer.next_due(0.5) == 1.0
    assert pacer.take(1.0) == "a"


@dataclass
class PanelChat:
    """A sender's loop over one turn, on a fake clock: what reached the chat, and when."""

    pacer: PanelPacer
    states: list[tuple[float, ShowProgress]]  # offered at these times, in order
    sent: list[tuple[float, str]] = field(default_factory=list)

    def run(self) -> None:
        latest: ShowProgress | None = None
        now, queue = 0.0, list(self.states)
        while True:
            while queue and queue[0][0] <= now:
                latest = queue.pop(0)[1]
                if self.sent or panel.is_due(latest, wall(now)):  # the panel exists or is due
                    self.pacer.offer(panel.render(latest, wall(now)), is_final=bool(latest.ending))
            due = self.pacer.next_due(now)
            if due is not None and due <= now and latest is not None:
                if not latest.ending:  # an ending keeps the elapsed time of its arrival
                    self.pacer.offer(panel.render(latest, wall(now)))
                text = self.pacer.take(now)
                assert text is not None
                self.sent.append((now, text))
                self.pacer.sent(text, now)
                continue
            moments = [t for t in (due, queue[0][0] if queue else None) if t is not None]
            if not moments:
                return
            now = min(moments)


def wall(seconds: float) -> datetime:
    return STARTED + timedelta(seconds=seconds)


def thirty_second_turn() -> list[tuple[float, ShowProgress]]:
    """A new state every 0.5 s: 10 tool calls of 2.5 s each, one at a time, then the answer."""
    base = ShowProgress(
        chat=Chat(conversation_id=ConversationId("c1"), channel="telegram", kind="private"),
        out_id=OutId("prg_t1_0"),
        turn_id=TurnId("t1"),
        seq=0,
        model="gpt-5",
        started_at=STARTED,
    )
    states = []
    for step in range(60):
        call, into = divmod(step, 6)  # 3 s per call: 0.5 s thinking, 2.5 s running
        tool = ToolLine(tool="shell", brief=f"step {call} ({into})", state="running")
        phase = "thinking" if into == 0 or call >= 10 else "tools"
        states.append(
            msgspec.structs.replace(
                base, seq=step, phase=phase, tools=[tool], calls=call, has_batch=True
            )
        )
    states.append(msgspec.structs.replace(base, seq=60, calls=10, ending="done"))
    return [(0.5 * n, state) for n, state in enumerate(states)]


@pytest.mark.parametrize(("is_group", "max_edits", "gap_s"), [(False, 30, 1.0), (True, 8, 4.0)])
def test_a_30_second_turn_with_10_tool_calls_stays_within_the_edit_budget(
    is_group, max_edits, gap_s
):
    chat = PanelChat(PanelPacer.for_chat(is_group=is_group), thirty_second_turn())
    chat.run()
    times = [at for at, _ in chat.sent]
    edits = len(times) - 1  # the first one creates the panel
    assert 0 < edits <= max_edits
    assert all(b - a >= gap_s for a, b in pairwise(times))
    assert chat.sent[-1][1] == "✅ Done · 30s · 10 tool calls"
    assert chat.sent[0][0] == 0.0  # the first batch shows the panel at once
