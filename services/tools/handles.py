"""Names of what outlives a call (shell sessions `sh<n>`, downloads `dl<n>`) and who holds them.

Every runner of a pool shares the pool host's workspaces, so the names live in the workspace:
`.stellaclaw/handles/<name>` records the runner process that holds it and, once it ended, how. A
name is taken with `O_EXCL`, so two runners never hand out the same one, and names are never
reused: a call on an ended one is answered from its record, and a call on one another runner holds
goes to that runner (`HeldElsewhereError`, forwarded by `runner`), or fails if that runner is gone.
"""

import contextlib
import os
import time

import msgspec

from services.tools import fs
from services.tools.results import ToolError
from services.tools.workspace import ToolCall

HANDLES_DIR = ".stellaclaw/handles"
MAX_RECORD_BYTES = 4096
MAX_LABEL_CHARS = 60


class Record(msgspec.Struct, kw_only=True, omit_defaults=True):
    runner_id: str
    ended: bool = False
    exit_code: int | None = None  # a shell session's, once reported
    signal: str | None = None
    # What `/status` shows (SPEC §12.4); records written before these fields have the defaults.
    started_at: float = 0.0  # Unix time
    label: str = ""  # the command or the URL, short (`short`)
    conversation_id: str = ""  # whose runner state to ask whether it still runs


def short(text: str) -> str:
    """`text` on one line (runs of whitespace made one space), cut to MAX_LABEL_CHARS with `…`."""
    line = " ".join(text.split())
    if len(line) <= MAX_LABEL_CHARS:
        return line
    return line[: MAX_LABEL_CHARS - 1].rstrip() + "…"


class HeldElsewhereError(Exception):
    """The name belongs to another runner process of the pool: the call goes there."""

    def __init__(self, runner_id: str, what: str) -> None:
        super().__init__(f"{what} is held by runner {runner_id}")
        self.runner_id = runner_id
        self.what = what  # `shell session sh3`, for the message when that runner is gone


def allocate(call: ToolCall, prefix: str, label: str, started_at: float | None = None) -> str:
    """A new name `<prefix><n>` in the conversation, recorded as held by this runner, with what
    it runs (`label`, shortened here) and since when (default: now)."""
    held = Record(
        runner_id=call.runner.runner_id,
        started_at=time.time() if started_at is None else started_at,
        label=short(label),
        conversation_id=call.conversation_id,
    )
    data = msgspec.json.encode(held)
    fs.make_dirs(call, HANDLES_DIR)
    directory = fs.open_dir(call, HANDLES_DIR)
    try:
        number = sum(1 for name in os.listdir(directory) if name.startswith(prefix)) + 1
        while True:
            name = f"{prefix}{number}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(name, flags, 0o644, dir_fd=directory)
            except FileExistsError:
                number += 1
                continue
            with os.fdopen(fd, "wb") as record:
                record.write(data)
            return name
    finally:
        os.close(directory)


def read(call: ToolCall, name: str) -> Record | None:
    """The name's record; None when no such name was ever handed out in this workspace."""
    if not name or "/" in name or name.startswith("."):
        return None
    try:
        data = fs.read_bytes(call, f"{HANDLES_DIR}/{name}", MAX_RECORD_BYTES)
    except ToolError as exc:
        if exc.kind == "not_found":
            return None
        raise
    with contextlib.suppress(msgspec.DecodeError):
        return msgspec.json.decode(data, type=Record)
    return None


def write(call: ToolCall, name: str, record: Record) -> None:
    fs.write_atomically(call, f"{HANDLES_DIR}/{name}", msgspec.json.encode(record))
