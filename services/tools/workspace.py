"""A conversation's workspace on this host, and the path rule every tool follows (SPEC §5.0).

A relative `Workspace.path` lives under the runner's workdir (`workspaces/<conv>`). Every path a
tool touches is walked race-free by `fs` and must stay inside the workspace or the shared dir.
"""

import asyncio
import contextlib
import posixpath
from pathlib import Path

import msgspec

from services.tools.context import RunnerContext
from services.tools.results import ToolError
from services.tools.sandbox.host import SandboxHost
from shared.messages.contract import Workspace
from shared.messages.tools import RunTool
from shared.sandbox import SandboxMode, resolve

HOME_DIR = ".stellaclaw/home"  # the sandboxed $HOME
WORKSPACES_DIR = "workspaces"
SHARED_DIR = "shared"  # `<workdir>/shared`, linked into every workspace under this name
MAX_PATH_BYTES = 4096  # Linux's PATH_MAX
MAX_NAME_BYTES = 255  # NAME_MAX


LOCAL_ONLY = (".skill", ".stellaclaw", SHARED_DIR)  # kept on the runner host in fixed mode


class RemoteTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where a call runs when it runs on an SSH remote (SPEC §6.6)."""

    name: str
    root: str  # the workspace root there; relative paths resolve against it


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
    remote: RemoteTarget | None = None  # fixed mode, or a selectable call's `remote`
    # A side effect: its ToolStarted is stored before it runs, and claims the call (a second
    # claim, from a delivery the bus lost count of, is refused and the call not run again)
    claims_start: bool = False


def remote_for(call: ToolCall, path: str) -> RemoteTarget | None:
    """The remote a path of the call lives on; None for the local ones: every path of a local
    call, and in fixed mode what stays on the runner host (`.skill/`, `.stellaclaw/`, `shared/`)."""
    if call.remote is None:
        return None
    first = posixpath.normpath(path).split("/", 1)[0] if not path.startswith("/") else ""
    return None if first in LOCAL_ONLY else call.remote


def prepare(
    request: RunTool, workdir: Path, host: SandboxHost, runner: RunnerContext | None = None
) -> ToolCall:
    """Resolve the request's workspace, creating it (and its `$HOME`) on first use."""
    root, shared = opened(request.workspace, workdir)
    return ToolCall(
        call_id=request.call_id,
        conversation_id=request.conversation_id,
        root=root,
        shared=shared,
        timeout_s=request.timeout_s,
        mode=resolve(request.sandbox, host.support).mode,
        host=host,
        runner=runner or RunnerContext(),
        position_in_batch=request.position_in_batch,
        remote=fixed_remote(request.workspace),
    )


def local_root(workspace: Workspace, workdir: Path) -> Path:
    """The workspace's directory on this host (not resolved): a relative path lies under the
    workdir; it must name a directory under `<workdir>/workspaces`, else `unavailable`."""
    root = workdir / workspace.path  # an absolute workspace path stays as it is
    workspaces = (workdir / WORKSPACES_DIR).resolve()
    if not root.resolve().is_relative_to(workspaces) or root.resolve() == workspaces:
        raise ToolError(
            "unavailable",
            f"workspace {workspace.path!r} is not a directory under {str(workspaces)!r}",
        )
    return root


def opened(workspace: Workspace, workdir: Path) -> tuple[Path, Path]:
    """The workspace root and the shared dir, both resolved; created (with the `$HOME` and the
    `shared` link) on first use."""
    shared = workdir / SHARED_DIR
    shared.mkdir(parents=True, exist_ok=True)
    root = local_root(workspace, workdir)
    (root / HOME_DIR).mkdir(parents=True, exist_ok=True)
    link = root / SHARED_DIR
    if not link.exists() and not link.is_symlink():
        with contextlib.suppress(FileExistsError):  # another runner of the pool made it just now
            link.symlink_to(shared.resolve(), target_is_directory=True)
    return root.resolve(), shared.resolve()


def fixed_remote(workspace: Workspace) -> RemoteTarget | None:
    """Fixed remote mode: the workspace is the remote's directory (SPEC §6.6)."""
    if not workspace.remote:
        return None
    return RemoteTarget(name=workspace.remote, root=workspace.remote_root)


def relative(call: ToolCall, path: Path) -> str:
    """How a confined path is shown to the model: relative to the workspace when inside it."""
    if path.is_relative_to(call.root):
        return str(path.relative_to(call.root))
    return str(path)
