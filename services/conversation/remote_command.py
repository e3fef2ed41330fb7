"""`/remote` (SPEC §6.6, §12.4) as pure functions of the conversation, the config and the probe.

`/remote` alone shows the mode and the configured remotes; `/remote <name> [path]` (fixed) is
applied only after the remote's pool reached it and found the path (the probe, ≤ 10 s);
`/remote select` and `/remote off` need no check. Changes apply from the next turn.
"""

from collections.abc import Mapping

import msgspec

from services.conversation.state import ConversationState
from shared.messages.contract import RemoteSetting
from shared.tools_config import RemoteConfig

USAGE = "Usage: /remote [name [path] | select | off]"
NONE_CONFIGURED = "No remotes are configured. Add [remotes.<name>] to the config."


class RemoteChange(msgspec.Struct, frozen=True, kw_only=True):
    """A `/remote` that changes the conversation: store `remote`, then reply `text`."""

    remote: RemoteSetting
    text: str


class CheckFirst(msgspec.Struct, frozen=True, kw_only=True):
    """`/remote <name> [path]`: probe the remote's pool, then `fixed()` with what it said."""

    name: str
    path: str  # the workspace root to use there


def answer(
    argument: str, current: ConversationState, remotes: Mapping[str, RemoteConfig]
) -> RemoteChange | CheckFirst | str:
    """What `/remote [argument]` does: a change, a check to make first, or the reply."""
    words = argument.split()
    if not words:
        return show(current, remotes)
    if words[0] == "off" and len(words) == 1:
        return RemoteChange(
            remote=RemoteSetting(), text="Remote mode off: tools run on this server."
        )
    if not remotes:
        return NONE_CONFIGURED
    if words[0] == "select" and len(words) == 1:
        text = f"Tools may now target any configured remote ({', '.join(remotes)}) or local."
        return RemoteChange(remote=RemoteSetting(mode="selectable"), text=text)
    if len(words) > 2:
        return USAGE
    name = words[0]
    found = remotes.get(name)
    if found is None:
        return f"Unknown remote: {name}. Configured: {', '.join(remotes)}."
    return CheckFirst(name=name, path=words[1] if len(words) == 2 else found.root)


def fixed(check: CheckFirst, error: str | None) -> RemoteChange | str:
    """The change after the probe; `error` is why the remote cannot be used (None: it can)."""
    if error is not None:
        return f"Cannot reach {check.name}: {error}. Remote mode unchanged."
    text = (
        f"Tools now run on {check.name} in {check.path}. Uploads and generated files go there "
        "too; skills and shared/ stay on this server."
    )
    return RemoteChange(
        remote=RemoteSetting(mode="fixed", name=check.name, path=check.path), text=text
    )


def show(current: ConversationState, remotes: Mapping[str, RemoteConfig]) -> str:
    """`Remote mode: …` and the configured remotes."""
    remote = current.remote
    found = remotes.get(remote.name)
    if remote.mode == "fixed" and found is not None:
        where = f"{found.user}@{found.host}:{remote.path or found.root}"
        mode = f"fixed on {remote.name} ({where})"
    elif remote.mode == "selectable" and remotes:
        mode = f"selectable — tools may target {', '.join(remotes)} or local"
    else:
        mode = "local — tools run on this server"
    if not remotes:
        return f"Remote mode: {mode}\n{NONE_CONFIGURED}"
    listed = ", ".join(f"{name} ({config.describe()})" for name, config in remotes.items())
    return f"Remote mode: {mode}\nConfigured remotes: {listed}"


def status_part(current: ConversationState, remotes: Mapping[str, RemoteConfig]) -> str:
    """`/status`'s `Remote:` part: `local`, `selectable: a, b` or `fixed <name>:<root>`."""
    remote = current.remote
    found = remotes.get(remote.name)
    if remote.mode == "fixed" and found is not None:
        return f"fixed {remote.name}:{remote.path or found.root}"
    if remote.mode == "selectable" and remotes:
        return f"selectable: {', '.join(remotes)}"
    return "local"
