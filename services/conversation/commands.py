"""Slash commands (SPEC §12.4): parsing, and the replies as pure functions of the conversation
state, the config and the session's answer to a status query."""

from datetime import UTC, datetime
from typing import assert_never

import msgspec

from services.conversation import remote_command, sandbox_command
from services.conversation.state import ConversationState, sandbox_setting
from shared.config import Config, compaction_limit
from shared.ids import SessionId
from shared.messages.history import Usage
from shared.messages.session import SessionStatus
from shared.messages.tools import HeldWork
from shared.model_config import ModelConfig
from shared.sandbox import SandboxSupport


class Command(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # as typed, without the slash and any @bot suffix
    argument: str


def parse(text: str) -> Command | None:
    """`/status@my_bot now` → Command("status", "now"); text that is not a command → None."""
    if not text.startswith("/") or text.startswith("//"):
        return None
    head, _, rest = text[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    if not name:
        return None
    return Command(name=name, argument=rest.strip())


HELP_LINES = (
    "Stellaclaw — commands",
    "/status — model, context, usage and running work",
    "/model [name] — show or switch the model",
    "/reasoning [level] — reasoning effort for this chat",
    "/sandbox [mode] — how commands are isolated",
    "/remote [name [path] | select | off] — run tools on an SSH remote",
    "/cancel — stop the running turn (/cancel all: background tasks too)",
    "/continue — resume an interrupted or failed turn",
    "/compact — compact the context now",
    "/new — start a fresh session (files are kept)",
    "/help — this list",
    "Send a message while I work to steer me; I read it at the next step.",
)
DEFAULT_NAME = "Stellaclaw"
NEW_SESSION = "🆕 New session started. Files and memory are kept; the previous history is archived."
CANCEL_USAGE = "Usage: /cancel [all]"
NO_ANSWER = "state unknown (no session service answered)"


def cancels_everything(command: Command) -> bool | None:
    """`/cancel` → False, `/cancel all` → True; any other argument → None (answered with usage)."""
    match command.argument.lower():
        case "":
            return False
        case "all":
            return True
        case _:
            return None


def reply(command: Command, bot_name: str = "") -> str:
    """The reply to a command that needs nothing but its name (`/start` greets as the bot)."""
    match command.name:
        case "help":
            return "\n".join(HELP_LINES)
        case "start":
            return "\n".join((f"👋 Hi, I'm {bot_name or DEFAULT_NAME}.", *HELP_LINES))
        case _:
            return f"Unknown command: /{command.name}. Send /help for the list."


class Extras(msgspec.Struct, frozen=True, kw_only=True):
    """What `/status` gathered beside the session's answer: the last 24 h of usage (None when
    unknown), what runs on in the workspace, and the time they are measured against."""

    last_day: Usage | None = None
    held: list[HeldWork] = msgspec.field(default_factory=list)
    now: float = 0.0  # Unix time


def status(
    state: ConversationState,
    config: Config,
    answer: SessionStatus | None,
    support: SandboxSupport | None,
    extra: Extras | None = None,
) -> str:
    """`/status`: the conversation's lines, the session's (`answer`, None when none came), the
    sandbox as the pool's probe (`support`, None when no runner answered) resolves it, and the
    `extra` lines (the last 24 h of usage, shell sessions and downloads)."""
    model = config.models[state.model]
    setting = sandbox_setting(state, config.sandbox.mode)
    spare = f" · fallback {answer.fallback} active" if answer and answer.fallback else ""
    extra = extra or Extras()
    last_day = extra.last_day
    return "\n".join(
        (
            "📊 Status",
            f"Model: {state.model} ({model.provider} · {model.model}){spare}",
            f"Reasoning: {state.reasoning or 'default'}",
            *session_lines(state.foreground, answer, model, config),
            *([line] if last_day and (line := usage_line(last_day, "24 h")) else []),
            sandbox_command.status_line(
                setting, support, remote_command.status_part(state, config.remotes)
            ),
            *held_lines(extra.held, extra.now),
            *([f"Waiting messages: {answer.waiting}"] if answer and answer.waiting else []),
            f"Workspace: {state.workspace.path} (pool {state.workspace.pool})",
        )
    )


def held_lines(held: list[HeldWork], now: float) -> list[str]:
    """`Shell sessions: sh2 (12m 05s, npm run dev)` and `Downloads: …`, when any run."""
    lines = []
    for title, prefix in (("Shell sessions", "sh"), ("Downloads", "dl")):
        found = [
            f"{work.name} ({held_for(work, now)}{work.label or '?'})"
            for work in held
            if work.name.startswith(prefix)
        ]
        if found:
            lines.append(f"{title}: {', '.join(found)}")
    return lines


def held_for(work: HeldWork, now: float) -> str:
    """`12m 05s, ` — nothing when the record predates start times."""
    return f"{duration(now - work.started_at)}, " if work.started_at else ""


def session_lines(
    session: SessionId, answer: SessionStatus | None, model: ModelConfig, config: Config
) -> list[str]:
    if answer is None:
        return [f"Session: {session} · {NO_ANSWER}"]
    lines = [session_line(session, answer), state_line(answer)]
    if answer.context_tokens:
        lines.append(context_line(answer, model, compaction_limit(model, config.compaction)))
    lines += compaction_lines(answer)
    if usage := usage_line(answer.usage, "this session"):
        lines.append(usage)
    return lines


def context_line(answer: SessionStatus, model: ModelConfig, limit: int) -> str:
    """`Context: 45.2k / 200k tokens (23 %) · compacts at 180k · reported` (SPEC §12.4)."""
    window = model.context_window
    share = round(100 * answer.context_tokens / window)
    anchor = "reported" if answer.context_is_reported else "≈"
    return (
        f"Context: {tokens(answer.context_tokens)} / {tokens(window)} tokens ({share} %)"
        f" · compacts at {tokens(limit)} · {anchor}"
    )


def compaction_lines(answer: SessionStatus) -> list[str]:
    """`Last compaction: 3m 05s ago (182k → 31.4k)`, and a failure since, if any."""
    lines = []
    if answer.last_compaction is not None and answer.compacted_tokens is not None:
        before, after = answer.compacted_tokens
        ago = duration((datetime.now(UTC) - answer.last_compaction).total_seconds())
        lines.append(f"Last compaction: {ago} ago ({tokens(before)} → {tokens(after)})")
    if answer.compaction_failure:
        lines.append(f"Compaction failed: {answer.compaction_failure} (history intact)")
    return lines


def session_line(session: SessionId, answer: SessionStatus) -> str:
    if answer.state == "new":
        return f"Session: {session} · new"
    turns = "1 turn" if answer.turns == 1 else f"{answer.turns} turns"
    since = f" · since {answer.started_at:%Y-%m-%d}" if answer.started_at else ""
    return f"Session: {session} · {turns}{since}"


def state_line(answer: SessionStatus) -> str:
    match answer.state:
        case "new" | "idle":
            return "State: idle"
        case "running":
            activity = f" ({answer.activity})" if answer.activity else ""
            return f"State: running {duration(answer.running_s or 0.0)}{activity}"
        case "failed":
            return "State: failed — /continue to resume"
        case "broken":
            reason = f" — {answer.broken_reason}" if answer.broken_reason else ""
            return f"State: broken{reason}"
        case unhandled:
            assert_never(unhandled)


def usage_line(usage: Usage, span: str) -> str | None:
    """`Usage, this session: 45.2k in (40k cached) · 1.2k out · $0.0123`; None when nothing was
    used. The cost is left out when no call's cost is known (no `prices`, SPEC §7.5).

    `in` counts every prompt token, cached or not (Usage keeps `input` uncached, SPEC §7.5), so
    the cached part reads as a part of it."""
    prompt = usage.input + usage.cache_read + usage.cache_write
    if not (prompt or usage.output):
        return None
    cost = "" if usage.cost is None else f" · {dollars(usage.cost)}"
    return (
        f"Usage, {span}: {tokens(prompt)} in ({tokens(usage.cache_read)} cached)"
        f" · {tokens(usage.output)} out{cost}"
    )


def dollars(cost: float) -> str:
    """`$12.40`, `$0.0123`: two decimals from a dollar up, four below it."""
    return f"${cost:.2f}" if cost >= 1 else f"${cost:.4f}"


def tokens(count: int) -> str:
    """`950`, `45.2k`, `200k`, `1.3M`: a token count as the status lines show it."""
    if count < 1000:
        return str(count)
    shown = round(count / 1000, 1)
    unit = "k"
    if shown >= 1000:
        shown, unit = round(count / 1_000_000, 1), "M"
    return f"{shown:.1f}".removesuffix(".0") + unit


def duration(seconds: float) -> str:
    """`42s`, `1m 05s`, `2h 03m`: how long something has run."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, rest = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
