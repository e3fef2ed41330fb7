"""`/sandbox` and the `/status` sandbox line (SPEC §6.1, §12.4): every reply and the admin rule."""

from datetime import UTC, datetime

import msgspec
import pytest

from services.conversation import sandbox_command, state
from services.conversation.sandbox_command import SandboxChange
from shared import config as config_file
from shared.ids import ConversationId
from shared.messages.contract import Chat, Sender
from shared.sandbox import SandboxMode, SandboxSupport
from tests.unit.shared.samples import message_received

MODEL = {"provider": "openai_chat", "model": "gpt-test", "base_url": "http://x/v1"}
NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
ADMIN, USER = 7, 42
BWRAP = SandboxSupport(bubblewrap_error=None)
NO_BWRAP = SandboxSupport(bubblewrap_error="bwrap is not installed (sandbox.bwrap_path)")
TG_CHAT = Chat(conversation_id=ConversationId("tg_5"), channel="telegram", kind="private")
UNKNOWN = "Unknown sandbox mode: {}. Use disabled, subprocess, bubblewrap or default."
ADMIN_ONLY = "Only an admin can set a weaker sandbox than the server default ({})."


def config(**sandbox: object) -> config_file.Config:
    raw = {
        "default_model": "main",
        "models": {"main": MODEL},
        "telegram": {"bot_token": "t", "admin_user_ids": [ADMIN]},
        "sandbox": sandbox,
    }
    return config_file.parse(raw, {})


def cli_chat(mode: SandboxMode | None = None) -> state.ConversationState:
    fresh = state.new_state(message_received("cli_ada", "hi").chat, "Ada", "main", NOW)
    return state.with_sandbox(fresh, mode)


def telegram_chat(mode: SandboxMode | None = None) -> state.ConversationState:
    return state.with_sandbox(state.new_state(TG_CHAT, "Bo", "main", NOW), mode)


def sender(user_id: int | None = USER) -> Sender:
    return Sender(user_id=user_id, display_name="Bo")


def ask(
    argument: str,
    current: state.ConversationState | None = None,
    cfg: config_file.Config | None = None,
    support: SandboxSupport | None = BWRAP,
    who: Sender | None = None,
) -> SandboxChange | str:
    chosen = cfg or config()
    current = current or cli_chat()
    admins = frozenset(chosen.telegram.admin_user_ids if chosen.telegram else ())
    admin = sandbox_command.is_admin(current.chat, who or sender(), admins)
    return sandbox_command.answer(argument, current, chosen, support, admin)


@pytest.mark.parametrize(
    ("current", "cfg", "support", "shown"),
    [
        (cli_chat("subprocess"), config(), BWRAP, "Sandbox: subprocess (this chat)."),
        (cli_chat("bubblewrap"), config(), None, "Sandbox: bubblewrap (this chat)."),
        (cli_chat(), config(), BWRAP, "Sandbox: bubblewrap (server default)."),
        (cli_chat(), config(), NO_BWRAP, "Sandbox: subprocess (server default)."),
        (cli_chat(), config(), None, "Sandbox: auto (server default)."),
        (cli_chat(), config(mode="disabled"), BWRAP, "Sandbox: disabled (server default)."),
    ],
)
def test_no_argument_shows_the_mode_and_where_it_comes_from(current, cfg, support, shown):
    assert ask("", current, cfg, support) == shown


def test_a_mode_is_set_for_this_chat():
    assert ask("subprocess") == SandboxChange(
        mode="subprocess", text="Sandbox set to subprocess for this chat."
    )
    assert ask("DISABLED") == SandboxChange(
        mode="disabled", text="Sandbox set to disabled for this chat."
    )


@pytest.mark.parametrize(("network", "said"), [(False, "off"), (True, "on")])
def test_bubblewrap_says_whether_the_network_is_on(network, said):
    assert ask("bubblewrap", cfg=config(network=network)) == SandboxChange(
        mode="bubblewrap", text=f"Sandbox set to bubblewrap for this chat. Network is {said}."
    )


@pytest.mark.parametrize(
    ("cfg", "support", "default"),
    [
        (config(), BWRAP, "bubblewrap"),
        (config(), NO_BWRAP, "subprocess"),
        (config(), None, "auto"),
        (config(mode="disabled"), BWRAP, "disabled"),
    ],
)
def test_default_clears_the_chats_mode_even_for_a_non_admin(cfg, support, default):
    asked = ask("default", telegram_chat("disabled"), cfg, support)
    assert asked == SandboxChange(
        mode=None, text=f"Sandbox reset to the server default ({default})."
    )


@pytest.mark.parametrize("argument", ["chroot", "auto", "off"])
def test_an_unknown_mode_names_the_choices(argument):
    assert ask(argument) == UNKNOWN.format(argument)


@pytest.mark.parametrize(
    ("current", "support", "reason", "unchanged"),
    [
        (cli_chat(), NO_BWRAP, NO_BWRAP.bubblewrap_error, "subprocess"),
        (cli_chat("disabled"), NO_BWRAP, NO_BWRAP.bubblewrap_error, "disabled"),
        (cli_chat(), None, "no tool runner answered", "auto"),
        (cli_chat("subprocess"), None, "no tool runner answered", "subprocess"),
    ],
)
def test_bubblewrap_is_refused_where_it_cannot_run(current, support, reason, unchanged):
    assert ask("bubblewrap", current, support=support) == (
        f"bubblewrap is not available on this server ({reason}). Sandbox unchanged: {unchanged}."
    )


@pytest.mark.parametrize(
    ("cfg", "support", "mode", "default"),
    [
        (config(), BWRAP, "subprocess", "bubblewrap"),  # auto counts as what it resolves to
        (config(), BWRAP, "disabled", "bubblewrap"),
        (config(), NO_BWRAP, "disabled", "subprocess"),
        (config(), None, "subprocess", "auto"),  # no runner: auto counts as bubblewrap
        (config(mode="subprocess"), BWRAP, "disabled", "subprocess"),
    ],
)
def test_a_non_admin_cannot_weaken_the_server_default(cfg, support, mode, default):
    asked = ask(mode, telegram_chat(), cfg, support, sender())
    assert asked == ADMIN_ONLY.format(default)


@pytest.mark.parametrize(
    ("cfg", "support", "mode"),
    [
        (config(), BWRAP, "bubblewrap"),  # as strong as the default
        (config(), NO_BWRAP, "subprocess"),
        (config(mode="subprocess"), None, "subprocess"),
        (config(mode="disabled"), BWRAP, "disabled"),
    ],
)
def test_a_non_admin_may_keep_or_strengthen_the_server_default(cfg, support, mode):
    asked = ask(mode, telegram_chat(), cfg, support, sender())
    assert isinstance(asked, SandboxChange)
    assert asked.mode == mode


def test_an_admin_and_the_cli_operator_may_weaken_it():
    by_admin = ask("disabled", telegram_chat(), config(), BWRAP, sender(ADMIN))
    by_operator = ask("disabled", cli_chat(), config(), None, sender(None))
    assert (
        by_admin
        == by_operator
        == SandboxChange(mode="disabled", text="Sandbox set to disabled for this chat.")
    )


def test_without_a_telegram_table_nobody_on_telegram_is_an_admin():
    no_telegram = msgspec.structs.replace(config(), telegram=None)
    assert no_telegram.telegram is None
    assert not sandbox_command.is_admin(TG_CHAT, sender(ADMIN), frozenset())
    assert not sandbox_command.is_admin(TG_CHAT, sender(None), frozenset({ADMIN}))
    assert sandbox_command.is_admin(TG_CHAT, sender(ADMIN), frozenset({ADMIN}))


@pytest.mark.parametrize(
    ("setting", "support", "line"),
    [
        ("auto", BWRAP, "Sandbox: bubblewrap (network off) · Remote: local"),
        (
            "auto",
            SandboxSupport(bubblewrap_error=None, network=True),
            "Sandbox: bubblewrap (network on) · Remote: local",
        ),
        (
            "auto",
            NO_BWRAP,
            "Sandbox: subprocess — bubblewrap is not available here: "
            "bwrap is not installed (sandbox.bwrap_path) · Remote: local",
        ),
        ("subprocess", BWRAP, "Sandbox: subprocess · Remote: local"),
        ("disabled", NO_BWRAP, "Sandbox: disabled · Remote: local"),
        (
            "bubblewrap",
            NO_BWRAP,
            "Sandbox: bubblewrap — cannot run on this host: "
            "bwrap is not installed (sandbox.bwrap_path) · Remote: local",
        ),
        ("auto", None, "Sandbox: auto (no tool runner answered) · Remote: local"),
        ("bubblewrap", None, "Sandbox: bubblewrap (no tool runner answered) · Remote: local"),
    ],
)
def test_the_status_line(setting, support, line):
    assert sandbox_command.status_line(setting, support) == line


def test_inputs_carry_the_chats_mode_else_the_server_default():
    assert state.settings(cli_chat(), "auto", {}).sandbox == "auto"
    assert state.settings(cli_chat(), "subprocess", {}).sandbox == "subprocess"
    assert state.settings(cli_chat("disabled"), "bubblewrap", {}).sandbox == "disabled"
    assert state.settings(cli_chat("bubblewrap"), "auto", {}).sandbox == "bubblewrap"


def test_a_state_stored_before_sandbox_modes_reads_as_the_server_default():
    stored = msgspec.json.decode(msgspec.json.encode(cli_chat()))
    del stored["sandbox"]
    assert state.STATE.decode(msgspec.json.encode(stored)).sandbox is None
