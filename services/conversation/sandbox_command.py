"""`/sandbox` and the `/status` sandbox line (SPEC §6.1, §12.4) as pure functions of the
conversation, the config, who asks and what the pool's probe said (None: no runner answered)."""

from typing import assert_never

import msgspec

from services.conversation.state import ConversationState, sandbox_setting
from shared.config import Config
from shared.messages.contract import Chat, Sender
from shared.sandbox import (
    MODES,
    SandboxMode,
    SandboxSetting,
    SandboxSupport,
    describe,
    is_weaker,
    resolve,
)

NO_RUNNER = "no tool runner answered"
BY_NAME: dict[str, SandboxMode] = {mode: mode for mode in MODES}


class SandboxChange(msgspec.Struct, frozen=True, kw_only=True):
    """A `/sandbox` that changes the conversation: store `mode`, then reply `text`."""

    mode: SandboxMode | None  # None: back to the server default
    text: str


def answer(
    argument: str,
    current: ConversationState,
    config: Config,
    support: SandboxSupport | None,
    is_admin: bool,
) -> SandboxChange | str:
    """`/sandbox [mode]` asked by an admin or not: a change to store, or the reply when nothing
    changes."""
    default = config.sandbox.mode
    if not argument:
        return show(current, default, support)
    wanted = argument.lower()
    if wanted == "default":
        return SandboxChange(
            mode=None, text=f"Sandbox reset to the server default ({shown(default, support)})."
        )
    mode = BY_NAME.get(wanted)
    if mode is None:
        return f"Unknown sandbox mode: {argument}. Use disabled, subprocess, bubblewrap or default."
    if not is_admin and is_weaker(mode, strength(default, support)):
        return (
            "Only an admin can set a weaker sandbox than the server default "
            f"({shown(default, support)})."
        )
    if mode == "bubblewrap" and (support is None or support.bubblewrap_error):
        reason = support.bubblewrap_error if support else NO_RUNNER
        unchanged = shown(sandbox_setting(current, default), support)
        return (
            f"bubblewrap is not available on this server ({reason}). "
            f"Sandbox unchanged: {unchanged}."
        )
    network = f" Network is {on_off(config.sandbox.network)}." if mode == "bubblewrap" else ""
    return SandboxChange(mode=mode, text=f"Sandbox set to {mode} for this chat.{network}")


def show(
    current: ConversationState, default: SandboxSetting, support: SandboxSupport | None
) -> str:
    """`Sandbox: subprocess (this chat).`, `Sandbox: bubblewrap (server default).`"""
    if current.sandbox is not None:
        return f"Sandbox: {current.sandbox} (this chat)."
    return f"Sandbox: {shown(default, support)} (server default)."


def shown(setting: SandboxSetting, support: SandboxSupport | None) -> str:
    """A setting as a reply names it: `auto` as the mode it resolves to, while a runner says."""
    if setting == "auto" and support is not None:
        return resolve(setting, support).mode
    return setting


def strength(setting: SandboxSetting, support: SandboxSupport | None) -> SandboxMode:
    """The mode a setting stands for in the admin rule: `auto` is what it resolves to, and
    `bubblewrap` when no runner answered (the safe reading)."""
    if setting != "auto":
        return setting
    return resolve(setting, support).mode if support is not None else "bubblewrap"


def is_admin(chat: Chat, sender: Sender, admins: frozenset[int]) -> bool:
    """A Telegram admin (`telegram.admin_user_ids` and those `/admin_authorize` recorded), or
    the operator: only whoever holds the workdir's bus credentials can speak on the CLI channel."""
    match chat.channel:
        case "cli":
            return True
        case "telegram":
            return sender.user_id in admins
        case unhandled:
            assert_never(unhandled)


def status_line(
    setting: SandboxSetting, support: SandboxSupport | None, remote: str = "local"
) -> str:
    """`Sandbox: bubblewrap (network off) · Remote: local`, or why the mode is not that."""
    if support is None:
        sandbox = f"{setting} ({NO_RUNNER})"
    elif setting == "bubblewrap" and support.bubblewrap_error:  # its calls fail as `unavailable`
        sandbox = f"bubblewrap — cannot run on this host: {support.bubblewrap_error}"
    else:
        sandbox = describe(resolve(setting, support), support.network)
    return f"Sandbox: {sandbox} · Remote: {remote}"


def on_off(flag: bool) -> str:
    return "on" if flag else "off"
