"""A removed conversation's workspace kept aside (SPEC §2.1): `EndWork(removed=True)` moves it to
`<workdir>/workspaces/.removed/<conv>-<YYYYMMDD>/` (`-2`, `-3`, … when that is taken).

Every runner hears the EndWork; those serving the workspace's pool move it. Several runners of
one pool on one host race for it, so the move is one rename and a workspace already gone counts
as moved. In fixed remote mode only the local part moves: the remote directory is left alone.
"""

import asyncio
import errno
import logging
import os
from datetime import UTC, date, datetime
from pathlib import Path

from services.tools.results import ToolError
from services.tools.workspace import WORKSPACES_DIR, local_root
from shared.messages.contract import Workspace
from shared.messages.tools import EndWork

REMOVED_DIR = ".removed"
MAX_NUMBER = 1000
log = logging.getLogger(__name__)


async def move_removed(workdir: Path, request: EndWork, pools: tuple[str, ...]) -> None:
    """Move the removed conversation's workspace aside if this runner's pools hold it."""
    found = request.workspace
    if not request.removed or found is None or found.pool not in pools:
        return
    conversation_id = request.conversation_id
    today = datetime.now(UTC).date()
    try:
        moved = await asyncio.to_thread(move_aside, workdir, found, conversation_id, today)
    except (ToolError, OSError) as exc:
        log.warning("could not move the workspace %r aside: %s", found.path, exc)
        return
    if moved is None:
        log.info("the workspace %r was already moved aside or gone", found.path)
    else:
        log.info("moved the workspace %r to %s", found.path, moved)


def move_aside(workdir: Path, workspace: Workspace, conversation_id: str, day: date) -> Path | None:
    """Rename the workspace's local directory under `.removed/`; where it went, or None when it
    is not there (moved by another runner, or never made)."""
    source = local_root(workspace, workdir)
    aside = workdir / WORKSPACES_DIR / REMOVED_DIR
    if source.resolve().is_relative_to(aside.resolve()):
        raise ToolError("unavailable", f"workspace {workspace.path!r} is already set aside")
    if not os.path.lexists(source):
        return None
    aside.mkdir(parents=True, exist_ok=True)
    stem = f"{conversation_id}-{day:%Y%m%d}"
    for number in range(1, MAX_NUMBER + 1):
        target = aside / (stem if number == 1 else f"{stem}-{number}")
        if os.path.lexists(target):
            continue
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None  # another runner of the pool moved it first
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue  # the name was taken meanwhile
            raise
        return target
    raise ToolError("exists", f"{aside / stem} and {MAX_NUMBER - 1} numbered names are taken")
