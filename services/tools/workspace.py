"""A conversation's workspace on this host, and the path rule every tool follows (SPEC §5.0).

A relative `Workspace.path` lives under the runner's workdir (`workspaces/<conv>`). Every path a
tool touches resolves (symlinks followed) inside the workspace or the shared dir, else the call
fails with `outside_workspace`.
"""

import asyncio
from pathlib import Path

import msgspec

from services.tools.context import RunnerContext
from services.tools.results import ToolError
from services.tools.sandbox.host import SandboxHost
from shared.messages.tools import RunTool
from shared.sandbox import SandboxMode, resolve

HOME_DIR = ".stellaclaw/home"  # the sandboxed $HOME
WORKSPACES_DIR = "workspaces"
SHARED_DIR = "shared"  # `<workdir>/shared`, linked into every workspace under this name
MAX_PATH_BYTES = 4096  # Linux's PATH_MAX
MAX_NAME_BYTES = 255  # NAME_MAX


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """One call as a tool sees it: its ids and the workspace it runs in."""

    call_id: str
    conversation_id: str
    root: Path  # the workspace directory, absolute and resolved
    shared: Path  # the shared dir, absolute and resolved
    timeout_s: float  # the hard limit the request set
    mode: SandboxMode  # how its commands run (the request's setting, `auto` resolved here)
    host: SandboxHost
    runner: RunnerContext = msgspec.field(default_factory=RunnerContext)
    position_in_batch: int = 1  # among the batch's calls of the same tool (SPEC §5.5 limits)
    # Set when a follow-up or /cancel cuts an interruptible wait short (SPEC §5.0): the tool
    # returns what it has, `interrupted: true`, and its work (a command, a download) goes on.
    cut_short: asyncio.Event = msgspec.field(default_factory=asyncio.Event)


def prepare(
    request: RunTool, workdir: Path, host: SandboxHost, runner: RunnerContext | None = None
) -> ToolCall:
    """Resolve the request's workspace, creating it (and its `$HOME`) on first use."""
    shared = workdir / SHARED_DIR
    shared.mkdir(parents=True, exist_ok=True)
    root = workdir / request.workspace.path  # an absolute workspace path stays as it is
    workspaces = (workdir / WORKSPACES_DIR).resolve()
    if not root.resolve().is_relative_to(workspaces) or root.resolve() == workspaces:
        raise ToolError(
            "unavailable",
            f"workspace {request.workspace.path!r} is not a directory under {str(workspaces)!r}",
        )
    (root / HOME_DIR).mkdir(parents=True, exist_ok=True)
    link = root / SHARED_DIR
    if not link.exists() and not link.is_symlink():
        link.symlink_to(shared.resolve(), target_is_directory=True)
    return ToolCall(
        call_id=request.call_id,
        conversation_id=request.conversation_id,
        root=root.resolve(),
        shared=shared.resolve(),
        timeout_s=request.timeout_s,
        mode=resolve(request.sandbox, host.support).mode,
        host=host,
        runner=runner or RunnerContext(),
        position_in_batch=request.position_in_batch,
    )


def confine(call: ToolCall, path: str, *, is_read: bool = False) -> Path:
    """The absolute path `path` names (relative to the workspace), if the rule allows it: the
    workspace and the shared dir, the software dir for reading; any path in `disabled` mode.
    A path no file system takes (a NUL byte, over PATH_MAX) is the model's bad argument."""
    if "\0" in path:
        raise ToolError("invalid_arguments", "the path contains a NUL byte")
    if len(path.encode(errors="surrogateescape")) > MAX_PATH_BYTES:
        raise ToolError("invalid_arguments", f"the path is longer than {MAX_PATH_BYTES:,} bytes")
    if any(len(part.encode(errors="surrogateescape")) > MAX_NAME_BYTES for part in path.split("/")):
        raise ToolError("invalid_arguments", f"a name in the path is over {MAX_NAME_BYTES} bytes")
    try:
        resolved = (call.root / path).resolve()
    except (OSError, RuntimeError) as exc:  # a name over NAME_MAX, a symlink loop
        raise ToolError("invalid_arguments", f"cannot resolve the path {path!r}: {exc}") from None
    if call.mode == "disabled":
        return resolved
    allowed = [call.root, call.shared]
    if is_read and call.host.software is not None:
        allowed.append(call.host.software.resolve())
    if any(resolved.is_relative_to(root) for root in allowed):
        return resolved
    raise ToolError("outside_workspace", f"path is outside the workspace: {path}")


def relative(call: ToolCall, path: Path) -> str:
    """How a confined path is shown to the model: relative to the workspace when inside it."""
    if path.is_relative_to(call.root):
        return str(path.relative_to(call.root))
    return str(path)
