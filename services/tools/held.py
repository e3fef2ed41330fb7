"""What runs on in a workspace (`/status`, SPEC §12.4): the shell sessions and downloads named in
its `.stellaclaw/handles/` that have not ended, for a ProbePool with `workspace` (`probes`).

The names stay on the runner host in every mode (fixed remote mode too), so any runner of the pool
reads them, race-free through `fs`. A record of this runner process is checked against what the
process runs now (a command may have exited, a download finished, before any call said so in the
record); another runner's record is listed as it says, for that runner answers for its own work.
A bad record or a file system error is logged and left out: the probe is answered all the same.
"""

import asyncio
import functools
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Set
from pathlib import Path

from services.tools import fs, handles, workspace
from services.tools.builtin.downloads import HELD_KIND as DOWNLOADS
from services.tools.builtin.downloads import Downloads
from services.tools.builtin.shell_sessions import HELD_KIND as SHELL
from services.tools.builtin.shell_sessions import Sessions
from services.tools.context import RunnerContext
from services.tools.results import ToolError
from services.tools.sandbox.host import SandboxHost
from services.tools.workspace import ToolCall
from shared.messages.contract import Workspace
from shared.messages.tools import HeldWork

MAX_ENTRIES = 64  # keeps the probe quick and its answer small
LIST_WITHIN_S = 2.0  # the conversation waits 3 s for the whole answer
PREFIXES = ("sh", "dl")  # shell sessions first, then downloads
NAME = re.compile(r"(sh|dl)([0-9]{1,9})")
Keep = Callable[[str, handles.Record], bool]
Alive = Callable[[str], Awaitable[bool]]
log = logging.getLogger(__name__)


async def work_in(
    context: RunnerContext, host: SandboxHost, workdir: Path, asked: Workspace, alive: Alive
) -> list[HeldWork]:
    """The workspace's shell sessions and downloads that still run, by name; [] when it has none,
    or they cannot be read. Another runner's are left out when `alive` says it is gone (a
    runner that stopped leaves its records unended)."""
    keep = functools.partial(is_running, runner_id=context.runner_id, live=running_here(context))
    try:
        async with asyncio.timeout(LIST_WITHIN_S):
            found = await asyncio.to_thread(listed, asked, workdir, host, keep)
            others = sorted({owner for _, owner in found if owner != context.runner_id})
            answers = await asyncio.gather(*map(alive, others))
            gone = {owner for owner, ok in zip(others, answers, strict=True) if not ok}
            return [work for work, owner in found if owner not in gone]
    except (ToolError, OSError) as exc:
        log.warning("cannot list what runs in workspace %s: %s", asked.path, exc)
    except TimeoutError:
        log.warning("listing what runs in workspace %s took over %g s", asked.path, LIST_WITHIN_S)
    except Exception:  # a fault of ours: /status goes without the list, the probe is answered
        log.exception("listing what runs in workspace %s failed unexpectedly", asked.path)
    return []


def running_here(context: RunnerContext) -> dict[str, set[str]]:
    """Per conversation, the names of the shell sessions and downloads this process runs now."""
    live: dict[str, set[str]] = {}
    for conversation_id, state in context.holding(SHELL).items():
        if isinstance(state, Sessions):
            names = {name for name, session in state.running.items() if not session.task.done()}
            live.setdefault(conversation_id, set()).update(names)
    for conversation_id, state in context.holding(DOWNLOADS).items():
        if isinstance(state, Downloads):
            names = {name for name, download in state.known.items() if download.state == "running"}
            live.setdefault(conversation_id, set()).update(names)
    return live


def is_running(
    name: str, record: handles.Record, *, runner_id: str, live: Mapping[str, Set[str]]
) -> bool:
    """Whether the record's work runs on: this runner's if it runs it now, another's unless its
    record says it ended."""
    if record.ended:
        return False
    if record.runner_id != runner_id:
        return True
    return name in live.get(record.conversation_id, ())


def listed(
    asked: Workspace, workdir: Path, host: SandboxHost, keep: Keep
) -> list[tuple[HeldWork, str]]:
    """The names `keep` takes, as HeldWork with the runner holding each, at most MAX_ENTRIES.
    Blocks: run it in a thread."""
    call = call_for(asked, workdir, host)
    if call is None:
        return []
    found: list[tuple[HeldWork, str]] = []
    for name in names(call):
        record = read(call, name)
        if record is not None and keep(name, record):
            work = HeldWork(name=name, started_at=record.started_at, label=record.label)
            found.append((work, record.runner_id))
            if len(found) == MAX_ENTRIES:
                break
    return found


def call_for(asked: Workspace, workdir: Path, host: SandboxHost) -> ToolCall | None:
    """The workspace as `fs` walks it (locally: the names never live on a remote); None when the
    workspace is not on this host (yet). One outside `<workdir>/workspaces` is `unavailable`."""
    root = workspace.local_root(asked, workdir)
    if not root.is_dir():
        return None
    return ToolCall(
        call_id="held",
        conversation_id="",
        root=root.resolve(),
        shared=(workdir / workspace.SHARED_DIR).resolve(),
        timeout_s=LIST_WITHIN_S,
        mode="subprocess",  # any mode but `disabled` keeps the walk inside the workspace
        host=host,
    )


def names(call: ToolCall) -> list[str]:
    """The names handed out in the workspace: `sh<n>` by number, then `dl<n>`."""
    try:
        directory = fs.open_dir(call, handles.HANDLES_DIR)
    except ToolError as exc:
        if exc.kind == "not_found":
            return []
        raise
    try:
        entries = os.listdir(directory)
    finally:
        os.close(directory)
    matched = [
        (PREFIXES.index(match[1]), int(match[2]), entry)
        for entry in entries
        if (match := NAME.fullmatch(entry))
    ]
    return [entry for _, _, entry in sorted(matched)]


def read(call: ToolCall, name: str) -> handles.Record | None:
    """The name's record; None (logged) when it cannot be read or decoded."""
    try:
        record = handles.read(call, name)
    except (ToolError, OSError) as exc:
        log.warning("skipped the record of %s in %s: %s", name, call.root, exc)
        return None
    if record is None:
        log.warning("skipped the record of %s in %s: not a record", name, call.root)
    return record
