"""The progress panel's text (SPEC §12.6): what each snapshot of a turn reads like."""

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from telegramify_markdown import utf16_len

from services.delivery import panel
from shared.ids import ConversationId, OutId, TurnId
from shared.messages.contract import Chat
from shared.messages.outbound import PlanStep, ShowProgress, ToolLine

STARTED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CHAT = Chat(conversation_id=ConversationId("c1"), channel="telegram", kind="private", chat_id=42)
FOOTER = "Send a message to steer · /cancel to stop"


def progress(**fields) -> ShowProgress:
    base = ShowProgress(
        chat=CHAT,
        out_id=OutId("prg_t1_1"),
        turn_id=TurnId("t1"),
        seq=1,
        model="gpt-5",
        started_at=STARTED,
    )
    return msgspec.structs.replace(base, **fields)


def at(seconds: float) -> datetime:
    return STARTED + timedelta(seconds=seconds)


def test_a_busy_turn_shows_every_line_in_order():
    state = progress(
        phase="tools",
        tools=[
            ToolLine(tool="shell", brief="pytest -q tests/test_api.py", state="running"),
            ToolLine(tool="file_read", brief="src/app.py", state="done"),
            ToolLine(tool="web_fetch", brief="https://example.com/a", state="failed"),
        ],
        tools_done=2,
        preamble="Let me run the tests first.",
        plan="Fix the failing API test",
        steps=[
            PlanStep(text="Reproduce", state="done"),
            PlanStep(text="Fix the handler", state="doing"),
            PlanStep(text="Run the suite", state="todo"),
        ],
        new_messages=2,
        warning="main model failed; using the fallback",
    )
    assert panel.render(state, at(65)) == "\n".join(
        [
            "⚙️ Working · gpt-5 · 1m05s",
            "🔧 Running tools (2/3)",
            "⏳ shell: pytest -q tests/test_api.py",
            "✅ file_read: src/app.py",
            "❌ web_fetch: https://example.com/a",
            "💬 Let me run the tests first.",
            "📋 Fix the failing API test",
            "✅ Reproduce",
            "▶️ Fix the handler",
            "⬜ Run the suite",
            "📥 2 new messages — read at the next step",
            "⚠️ main model failed; using the fallback",
            FOOTER,
        ]
    )


def test_a_quiet_turn_shows_only_the_lines_with_something_to_show():
    assert panel.render(progress(), at(4)) == f"⚙️ Working · gpt-5 · 4s\n🧠 Thinking…\n{FOOTER}"


@pytest.mark.parametrize(
    ("phase", "line"),
    [
        ("compacting", "🗜️ Compacting context…"),
        ("writing", "✍️ Writing the answer…"),
        ("tools", "🔧 Running tools (0/0)"),
    ],
)
def test_the_second_line_names_the_phase(phase, line):
    assert panel.render(progress(phase=phase), at(4)).splitlines()[1] == line


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (45, "45s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (65, "1m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7380, "2h03m"),
        (-5, "0s"),
    ],
)
def test_elapsed_reads_short(seconds, shown):
    assert panel.format_elapsed(timedelta(seconds=seconds)) == shown


def test_at_most_8_tool_lines_then_how_many_more():
    tools = [ToolLine(tool="grep", brief=f"pattern {n}", state="done") for n in range(11)]
    lines = panel.render(progress(phase="tools", tools=tools, tools_done=11), at(9)).splitlines()
    assert lines[1] == "🔧 Running tools (11/11)"
    assert lines[2:11] == [f"✅ grep: pattern {n}" for n in range(8)] + ["… and 3 more"]


def test_a_brief_is_one_line_of_at_most_40_chars():
    tool = ToolLine(tool="shell", brief="echo one\necho two " + "x" * 60, state="running")
    line = panel.render(progress(tools=[tool]), at(9)).splitlines()[2]
    brief = line.removeprefix("⏳ shell: ")
    assert "\n" not in brief
    assert len(brief) == 40
    assert brief.startswith("echo one echo two x")
    assert brief.endswith("…")


def test_a_long_preamble_is_cut_to_200_chars():
    text = panel.render(progress(preamble="word " * 100), at(9))
    [said] = [line for line in text.splitlines() if line.startswith("💬 ")]
    assert len(said.removeprefix("💬 ")) <= 200
    assert said.endswith("…")


def test_the_streamed_answer_replaces_the_preamble_with_its_last_1000_chars():
    stream = "".join(f"{n:04d} " for n in range(400))  # 2,000 chars
    text = panel.render(progress(preamble="Let me look."), at(9), stream_line=stream)
    assert "Let me look." not in text
    said = text.split("💬 ")[1].split("\n" + FOOTER)[0]
    assert len(said) <= 1000
    assert said.startswith("…")
    assert said.endswith("0399")


def test_new_messages_are_counted_in_words_that_fit_the_number():
    assert "📥 1 new message — read at the next step" in panel.render(
        progress(new_messages=1), at(9)
    )


def test_past_7_steps_the_panel_shows_the_7_around_the_current_one():
    steps = [PlanStep(text=f"step {n}", state="done") for n in range(6)]
    steps += [PlanStep(text="step 6", state="doing")]
    steps += [PlanStep(text=f"step {n}", state="todo") for n in range(7, 12)]
    lines = panel.render(progress(steps=steps), at(9)).splitlines()
    shown = [line for line in lines if line.startswith(("✅ step", "▶️ step", "⬜ step"))]
    assert shown == ["✅ step 5", "▶️ step 6"] + [f"⬜ step {n}" for n in range(7, 12)]


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"ending": "done", "calls": 12}, "✅ Done · 1m05s · 12 tool calls"),
        ({"ending": "done", "calls": 1}, "✅ Done · 1m05s · 1 tool call"),
        ({"ending": "done"}, "✅ Done · 1m05s · 0 tool calls"),
        (
            {"ending": "failed", "reason": "provider timed out"},
            "❌ Failed · 1m05s — provider timed out",
        ),
        ({"ending": "cancelled"}, "⏹ Cancelled · 1m05s"),
        ({"ending": "round_limit"}, "⏸ Stopped after 120 tool rounds · 1m05s"),
        ({"ending": "interrupted"}, "⚠️ Interrupted"),
    ],
)
def test_an_ended_turn_reads_as_one_line(fields, line):
    busy = {"phase": "tools", "tools": [ToolLine(tool="ls", brief=".", state="done")]}
    assert panel.render(progress(**busy, **fields), at(65)) == line


def test_the_round_limit_line_names_the_configured_limit():
    assert panel.render(progress(ending="round_limit"), at(5), round_limit=30) == (
        "⏸ Stopped after 30 tool rounds · 5s"
    )


def test_a_huge_state_fits_one_message_giving_up_the_streamed_line_first():
    state = progress(
        model="m" * 500,
        tools=[ToolLine(tool="t" * 300, brief="b", state="running")] * 8,
        warning="w" * 400,
    )
    text = panel.render(state, at(9), stream_line="😀" * 1000)  # 2,000 units
    assert utf16_len(text) <= 4096
    assert text.endswith(FOOTER)
    assert "w" * 400 in text
    assert "💬 😀" in text


def test_an_endless_reason_is_cut_to_one_message():
    text = panel.render(progress(ending="failed", reason="😀" * 5000), at(9))
    assert text.startswith("❌ Failed · 9s — 😀")
    assert 4000 < utf16_len(text) <= 4096


def test_the_panel_is_due_at_the_first_batch_or_after_3_seconds():
    assert not panel.is_due(progress(), at(2.9))
    assert panel.is_due(progress(), at(3))
    assert panel.is_due(progress(has_batch=True), at(0.2))
