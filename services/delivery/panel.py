"""The progress panel's text (SPEC §12.6): one ShowProgress snapshot, rendered at a given time.

Pure: the sender decides when the panel exists (`is_due`) and when it is edited (pacing.py); this
module only says what it reads. The panel is plain text, so nothing in it needs escaping, and it
stays within one Telegram message: the 💬 line gives way first, then the end of the text.
"""

from datetime import datetime, timedelta

from telegramify_markdown import utf16_len

from shared.messages.outbound import Phase, PlanStep, ShowProgress, StepState, ToolLine

MAX_UNITS = 4096  # one Telegram message, in UTF-16 code units
DUE_AFTER = timedelta(seconds=3)  # a turn that answers sooner has no panel
MAX_TOOL_LINES = 8
MAX_STEPS = 7
MAX_BRIEF_CHARS = 40
MAX_PREAMBLE_CHARS = 200
MAX_STREAM_CHARS = 1000  # `telegram.stream = "edit"`: the end of the answer so far
MAX_PLAN_CHARS = 60
MAX_STEP_CHARS = 50
FOOTER = "Send a message to steer · /cancel to stop"
PHASES: dict[Phase, str] = {
    "thinking": "🧠 Thinking…",
    "tools": "🔧 Running tools ({done}/{total})",
    "compacting": "🗜️ Compacting context…",
    "writing": "✍️ Writing the answer…",
}
TOOL_ICONS = {"running": "⏳", "done": "✅", "failed": "❌"}
STEP_ICONS: dict[StepState, str] = {"done": "✅", "doing": "▶️", "todo": "⬜"}


def is_due(progress: ShowProgress, now: datetime) -> bool:
    """Whether the turn has a panel yet: from its first tool batch, or once it has run 3 s."""
    return progress.has_batch or now - progress.started_at >= DUE_AFTER


def render(
    progress: ShowProgress, now: datetime, *, stream_line: str = "", round_limit: int = 120
) -> str:
    """The panel's text at `now`. `stream_line` is the answer streamed so far (`stream = "edit"`),
    shown instead of the preamble; `round_limit` is `agent.max_round_trips`, for that ending.

    For an ending, `now` is when the turn ended (when its output arrived), not when the edit goes.
    """
    elapsed = format_elapsed(now - progress.started_at)
    if progress.ending:
        return _fit(_ending(progress, elapsed, round_limit))
    head = [f"⚙️ Working · {progress.model} · {elapsed}", _phase(progress), *_tools(progress.tools)]
    tail = [*_plan(progress.plan, progress.steps), *_notes(progress), FOOTER]
    if stream_line.strip():
        said = "💬 " + _last(stream_line.strip(), MAX_STREAM_CHARS)
    elif progress.preamble.strip():
        said = "💬 " + _first(progress.preamble.strip(), MAX_PREAMBLE_CHARS)
    else:
        return _fit("\n".join([*head, *tail]))
    room = MAX_UNITS - utf16_len("\n".join([*head, *tail])) - 1  # the newline before 💬
    if utf16_len(said) > room:
        said = (_clipped_units(said, room - 1) + "…") if room > utf16_len("💬 …") else ""
    return _fit("\n".join(line for line in [*head, said, *tail] if line))


def format_elapsed(elapsed: timedelta) -> str:
    """`45s`, `1m05s`, `2h03m`: short enough for the panel's first line."""
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _ending(progress: ShowProgress, elapsed: str, round_limit: int) -> str:
    match progress.ending:
        case "done":
            calls = "1 tool call" if progress.calls == 1 else f"{progress.calls} tool calls"
            return f"✅ Done · {elapsed} · {calls}"
        case "failed":
            reason = " ".join(progress.reason.split())
            return f"❌ Failed · {elapsed} — {reason}" if reason else f"❌ Failed · {elapsed}"
        case "cancelled":
            return f"⏹ Cancelled · {elapsed}"
        case "round_limit":
            return f"⏸ Stopped after {round_limit} tool rounds · {elapsed}"
        case "interrupted":
            return "⚠️ Interrupted"
        case "":
            raise ValueError("a turn still running has no ending line")


def _phase(progress: ShowProgress) -> str:
    return PHASES[progress.phase].format(done=progress.tools_done, total=len(progress.tools))


def _tools(tools: list[ToolLine]) -> list[str]:
    lines = []
    for line in tools[:MAX_TOOL_LINES]:
        brief = _first(_one_line(line.brief), MAX_BRIEF_CHARS)
        name = f"{line.tool}: {brief}" if brief else line.tool
        lines.append(f"{TOOL_ICONS[line.state]} {name}")
    if len(tools) > MAX_TOOL_LINES:
        lines.append(f"… and {len(tools) - MAX_TOOL_LINES} more")
    return lines


def _plan(plan: str, steps: list[PlanStep]) -> list[str]:
    lines = [f"📋 {_first(_one_line(plan), MAX_PLAN_CHARS)}"] if plan.strip() else []
    return lines + [
        f"{STEP_ICONS[step.state]} {_first(_one_line(step.text), MAX_STEP_CHARS)}"
        for step in _shown_steps(steps)
    ]


def _shown_steps(steps: list[PlanStep]) -> list[PlanStep]:
    """At most MAX_STEPS, starting just before the first step not yet done."""
    if len(steps) <= MAX_STEPS:
        return steps
    current = next((i for i, step in enumerate(steps) if step.state != "done"), len(steps))
    start = min(max(current - 1, 0), len(steps) - MAX_STEPS)
    return steps[start : start + MAX_STEPS]


def _notes(progress: ShowProgress) -> list[str]:
    lines = []
    if progress.new_messages > 0:
        noun = "message" if progress.new_messages == 1 else "messages"
        lines.append(f"📥 {progress.new_messages} new {noun} — read at the next step")
    if progress.warning.strip():
        lines.append(f"⚠️ {_one_line(progress.warning)}")
    return lines


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def _last(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else "…" + text[len(text) - max_chars + 1 :].lstrip()


def _fit(text: str) -> str:
    """The text cut to one message; only an over-long model name, warning or reason needs it."""
    if utf16_len(text) <= MAX_UNITS:
        return text
    return _clipped_units(text, MAX_UNITS - 1) + "…"


def _clipped_units(text: str, max_units: int) -> str:
    """The longest start of `text` within `max_units` UTF-16 units, never half a surrogate pair."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > max_units:
            return text[:index]
    return text
