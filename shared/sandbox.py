"""Sandbox modes (SPEC §6.1): what a conversation asks for, and what a runner's host gives it.

`auto` (the default) is `bubblewrap` wherever `bwrap` works, else `subprocess` with a warning.
The conversation, the session and the runner resolve a setting with the same rule; the runner,
which really launches the command, has the last word.
"""

from typing import Literal

import msgspec

from shared.messages.contract import Value

SandboxSetting = Literal["auto", "disabled", "subprocess", "bubblewrap"]
SandboxMode = Literal["disabled", "subprocess", "bubblewrap"]
MODES: tuple[SandboxMode, ...] = ("disabled", "subprocess", "bubblewrap")  # weakest first


class SandboxSupport(Value, frozen=True, kw_only=True):
    """What a runner's host offers, as its probe and its catalog tell it."""

    bubblewrap_error: str | None = None  # None: `bwrap` works there
    network: bool = False  # `sandbox.network`: bubblewrap commands may reach the network
    process_limit: str = ""  # how the pids limit is enforced there (SPEC §6.3)


class Resolved(msgspec.Struct, frozen=True, kw_only=True):
    mode: SandboxMode
    warning: str | None = None  # `auto` fell back to subprocess: why


def resolve(setting: SandboxSetting, support: SandboxSupport) -> Resolved:
    """The mode a command runs in. An explicit `bubblewrap` stays `bubblewrap` even where it cannot
    run (its calls then fail as `unavailable`): there is no silent fallback."""
    if setting != "auto":
        return Resolved(mode=setting)
    if support.bubblewrap_error is None:
        return Resolved(mode="bubblewrap")
    return Resolved(
        mode="subprocess", warning=f"bubblewrap is not available here: {support.bubblewrap_error}"
    )


def is_weaker(mode: SandboxMode, than: SandboxMode) -> bool:
    return MODES.index(mode) < MODES.index(than)


def describe(resolved: Resolved, network: bool) -> str:
    """`bubblewrap (network off)`, `subprocess — bubblewrap is not available here: …`."""
    if resolved.warning:
        return f"{resolved.mode} — {resolved.warning}"
    if resolved.mode == "bubblewrap":
        return f"bubblewrap (network {'on' if network else 'off'})"
    return resolved.mode
