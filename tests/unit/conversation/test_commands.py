"""Command parsing and the replies composed from the state, the config and the session's answer."""

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from services.conversation import commands, state
from shared import config as config_file
from shared.ids import SessionId
from shared.messages.history import Usage
from shared.messages.session import SessionStatus
from shared.messages.tools import HeldWork
from shared.sandbox import SandboxSupport
from tests.unit.shared.samples import message_received

MODEL = {"provider": "openai_chat", "model": "gpt-test", "base_url": "http://x/v1"}
CONFIG = config_file.parse({"default_model": "main", "models": {"main": MODEL}}, {})
SESSION = SessionId("cli_ada_fg1")
STARTED = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def conversation() -> state.ConversationState:
    return state.new_state(message_received("cli_ada", "hi").chat, "Ada", "main", STARTED)


def answer(**fields) -> SessionStatus:
    return SessionStatus(session_id=SESSION, **{"state": "idle", **fields})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("/cancel all", commands.Command(name="cancel", argument="all")),
        ("/Status@my_bot  now ", commands.Command(name="status", argument="now")),
        ("/new", commands.Command(name="new", argument="")),
        ("hello /new", None),
        ("//not a command", None),
        ("/", None),
    ],
)
def test_parse(text, parsed):
    assert commands.parse(text) == parsed


@pytest.mark.parametrize(("argument", "everything"), [("", False), ("all", True), ("ALL", True)])
def test_cancel_takes_nothing_or_all(argument, everything):
    command = commands.Command(name="cancel", argument=argument)
    assert commands.cancels_everything(command) is everything


def test_cancel_with_another_argument_is_a_usage_error():
    assert commands.cancels_everything(commands.Command(name="cancel", argument="now")) is None


def test_help_and_start_list_the_commands_that_exist():
    help_text = commands.reply(commands.Command(name="help", argument=""))
    lines = help_text.splitlines()
    assert lines[0] == "Stellaclaw — commands"
    assert [line.split(" ")[0] for line in lines[1:-1]] == [
        "/status",
        "/model",
        "/reasoning",
        "/sandbox",
        "/remote",
        "/cancel",
        "/continue",
        "/compact",
        "/new",
        "/help",
    ]
    assert lines[-1] == "Send a message while I work to steer me; I read it at the next step."
    start = commands.reply(commands.Command(name="start", argument=""), "Ada's helper")
    assert start == "👋 Hi, I'm Ada's helper.\n" + help_text


def test_an_unknown_command_points_to_help():
    reply = commands.reply(commands.Command(name="x", argument=""))
    assert reply == "Unknown command: /x. Send /help for the list."


def test_status_without_answers_says_the_session_state_and_the_sandbox_are_unknown():
    assert commands.status(conversation(), CONFIG, None, None).splitlines() == [
        "📊 Status",
        "Model: main (openai_chat · gpt-test)",
        "Reasoning: default",
        "Session: cli_ada_fg1 · state unknown (no session service answered)",
        "Sandbox: auto (no tool runner answered) · Remote: local",
        "Workspace: workspaces/cli_ada (pool local)",
    ]


def test_status_of_an_idle_session_leaves_out_usage_when_there_is_none():
    idle = answer(turns=1, started_at=STARTED)
    bwrap = SandboxSupport(bubblewrap_error=None)
    assert commands.status(conversation(), CONFIG, idle, bwrap).splitlines()[3:] == [
        "Session: cli_ada_fg1 · 1 turn · since 2025-03-01",
        "State: idle",
        "Sandbox: bubblewrap (network off) · Remote: local",
        "Workspace: workspaces/cli_ada (pool local)",
    ]


def test_status_of_a_running_session_shows_its_time_activity_and_usage():
    busy = answer(
        state="running",
        turns=12,
        started_at=STARTED,
        running_s=42.9,
        activity="running 2 tools",
        usage=Usage(input=800, cache_read=0, output=95),
        context_tokens=50_000,
        context_is_reported=True,
        last_compaction=datetime.now(UTC) - timedelta(minutes=3, seconds=5),
        compacted_tokens=(182_000, 31_400),
        compaction_failure="HTTP 503 from 127.0.0.1: down",
    )
    wide = msgspec.structs.replace(CONFIG.models["main"], context_window=200_000)
    lines = commands.session_lines(SESSION, busy, wide, CONFIG)
    assert lines[:3] == [
        "Session: cli_ada_fg1 · 12 turns · since 2025-03-01",
        "State: running 42s (running 2 tools)",
        # SPEC §4.2: min(0.9 x 200k, 200k - 8,192 output) = 180k
        "Context: 50k / 200k tokens (25 %) · compacts at 180k · reported",
    ]
    assert lines[3] in (  # the clock may tick between the two readings
        "Last compaction: 3m 05s ago (182k → 31.4k)",
        "Last compaction: 3m 06s ago (182k → 31.4k)",
    )
    assert lines[4:] == [
        "Compaction failed: HTTP 503 from 127.0.0.1: down (history intact)",
        "Usage, this session: 800 in (0 cached) · 95 out",
    ]
    estimated = msgspec.structs.replace(busy, context_is_reported=False, context_tokens=1_500)
    small = commands.context_line(estimated, CONFIG.models["main"], 115_200)
    assert small == "Context: 1.5k / 128k tokens (1 %) · compacts at 115.2k · ≈"


@pytest.mark.parametrize(
    ("fields", "session", "state_line"),
    [
        ({"state": "new"}, "Session: cli_ada_fg1 · new", "State: idle"),
        (
            {"state": "failed", "turns": 2},
            "Session: cli_ada_fg1 · 2 turns",
            "State: failed — /continue to resume",
        ),
        (
            {"state": "broken", "turns": 2, "broken_reason": "event 17 cannot be read"},
            "Session: cli_ada_fg1 · 2 turns",
            "State: broken — event 17 cannot be read",
        ),
        ({"state": "running"}, "Session: cli_ada_fg1 · 0 turns", "State: running 0s"),
    ],
)
def test_status_session_and_state_lines(fields, session, state_line):
    lines = commands.session_lines(SESSION, answer(**fields), CONFIG.models["main"], CONFIG)
    assert lines == [session, state_line]


def test_usage_counts_every_prompt_token_and_shows_the_cached_part():
    usage = Usage(input=5_000, cache_read=40_000, cache_write=200, output=1_234, reasoning=9)
    line = commands.usage_line(usage, "this session")
    assert line == "Usage, this session: 45.2k in (40k cached) · 1.2k out"
    assert commands.usage_line(Usage(reasoning=3), "24 h") is None


@pytest.mark.parametrize(
    ("cost", "shown"), [(0.012345, "$0.0123"), (12.4, "$12.40"), (0.0, "$0.0000")]
)
def test_the_cost_is_shown_when_known(cost, shown):
    usage = Usage(input=1_000, output=10, cost=cost)
    assert commands.usage_line(usage, "24 h") == f"Usage, 24 h: 1k in (0 cached) · 10 out · {shown}"


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, "0"),
        (999, "999"),
        (1_000, "1k"),
        (45_249, "45.2k"),
        (200_000, "200k"),
        (999_960, "1M"),
        (1_340_000, "1.3M"),
    ],
)
def test_tokens(count, shown):
    assert commands.tokens(count) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(-1.0, "0s"), (42.9, "42s"), (60, "1m 00s"), (65.4, "1m 05s"), (7_380, "2h 03m")],
)
def test_duration(seconds, shown):
    assert commands.duration(seconds) == shown


def test_status_lists_shell_sessions_downloads_and_waiting_messages():
    now = STARTED.timestamp()
    held = [
        HeldWork(name="sh2", started_at=now - 725, label="npm run dev"),
        HeldWork(name="dl1", started_at=now - 42, label="https://example.com/big.iso"),
        HeldWork(name="sh3", started_at=now - 3, label="tail -f log"),
    ]
    busy = answer(turns=2, started_at=STARTED, state="running", running_s=9.0, waiting=2)
    extra = commands.Extras(held=held, now=now)
    lines = commands.status(conversation(), CONFIG, busy, None, extra).splitlines()
    assert lines[-4:] == [
        "Shell sessions: sh2 (12m 05s, npm run dev), sh3 (3s, tail -f log)",
        "Downloads: dl1 (42s, https://example.com/big.iso)",
        "Waiting messages: 2",
        "Workspace: workspaces/cli_ada (pool local)",
    ]
    quiet = commands.status(conversation(), CONFIG, answer(), None, commands.Extras(now=now))
    assert not any(
        line.startswith(("Shell", "Downloads", "Waiting")) for line in quiet.splitlines()
    )
