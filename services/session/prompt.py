"""The system prompt, built when a session starts (never mid-session: prompt caches stay warm).

A change of the sandbox mode between two turns reaches the model as a `[Runtime Prompt Updates]`
notice before the next user message (SPEC §3.1).
"""

from collections.abc import Mapping, Sequence

from shared.config import SandboxConfig
from shared.messages.contract import RemoteSetting
from shared.messages.history import Compacted, HistoryEvent, Notice, SessionStarted
from shared.sandbox import SandboxMode, SandboxSetting, SandboxSupport, describe, resolve
from shared.tools_config import RemoteConfig

IDENTITY = "You are Stellaclaw, a capable assistant with tools."
RULES = (
    "Your workspace is the current directory of every tool call and your writable area; "
    "relative paths resolve against it.",
    "Verify with tools instead of guessing; say what you checked.",
    "Your final answer is what the user reads: make it complete and self-contained.",
)


PROTECTS: dict[SandboxMode, str] = {
    "bubblewrap": (
        "shell commands are confined to the workspace and shared/ in their own PID namespace, "
        "with a read-only system{network}; processes left in the background end with each call"
    ),
    "subprocess": (
        "shell commands run as plain processes with a cleared environment and resource limits; "
        "they are not confined and can read what the Stellaclaw service's user can read"
    ),
    "disabled": (
        "shell commands run as the Stellaclaw service's user with its environment (secrets "
        "removed) and no limits; file tools accept any absolute path"
    ),
}
SANDBOX_TAG = "Runtime Prompt Updates"


def system_prompt(conversation_id: str, model: str, sandbox: str) -> str:
    """`sandbox`: the isolation line the session started with (`sandbox_line`)."""
    lines = [IDENTITY, "", "Rules:", *(f"- {rule}" for rule in RULES), ""]
    lines += ["Environment:", f"- conversation: {conversation_id}", f"- model: {model}"]
    if sandbox:
        lines.append(f"- {sandbox}")
    return "\n".join(lines)


def sandbox_line(setting: SandboxSetting, support: SandboxSupport, sandbox: SandboxConfig) -> str:
    """`sandbox: bubblewrap (network off): shell commands are confined …`, as the model reads it:
    the mode a runner with `support` runs the conversation's `setting` in, and what it protects."""
    resolved = resolve(setting, support)
    network = " and the network" if support.network else " and no network"
    line = f"sandbox: {describe(resolved, support.network)}: "
    line += PROTECTS[resolved.mode].format(network=network)
    if sandbox.software_dir:
        where = (
            sandbox.software_mount_path if resolved.mode == "bubblewrap" else sandbox.software_dir
        )
        line += f"; shared software (read-only) is in {where} ($STELLACLAW_SOFTWARE_DIR)"
    return line


def remote_part(remote: RemoteSetting, remotes: Mapping[str, RemoteConfig]) -> str:
    """The remote mode as the model reads it (SPEC §3.1: names and roots); "" when local."""
    found = remotes.get(remote.name)
    if remote.mode == "fixed" and found is not None:
        root = remote.path or found.root
        return (
            f"; remote: fixed on {remote.name} ({found.user}@{found.host}), workspace root "
            f"{root}: shell commands and file tools run there, except paths under .skill/, "
            ".stellaclaw/ and shared/, which stay on the Stellaclaw server"
        )
    if remote.mode == "selectable" and remotes:
        listed = ", ".join(f"{name} (root {config.root})" for name, config in remotes.items())
        return f"; remote: selectable: file tools and shell take remote = local or {listed}"
    return ""


def sandbox_update(line: str) -> str:
    """The `[Runtime Prompt Updates]` notice of a sandbox change between two turns (SPEC §3.1)."""
    return f"[{SANDBOX_TAG}] The sandbox or remote mode changed; from now on: {line}"


def started_sandbox(events: Sequence[HistoryEvent]) -> str:
    """The sandbox line of the session's system prompt (its first event says it: the session's
    start, or the compaction that rebuilt the prompt)."""
    first = events[0] if events else None
    return first.sandbox if isinstance(first, SessionStarted | Compacted) else ""


def current_sandbox(events: Sequence[HistoryEvent]) -> str:
    """The sandbox line the model was told last: the latest update, else the prompt's."""
    for event in reversed(events):
        if isinstance(event, Notice) and event.tag == SANDBOX_TAG:
            return event.sandbox
    return started_sandbox(events)
