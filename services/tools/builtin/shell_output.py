"""A command's output as it arrives (SPEC §5.2): the unread window the model gets next, bounded,
and the whole output in `.stellaclaw/shell/<id>.log` (up to LOG_LIMIT_BYTES).

The window keeps the first MAX_WINDOW_CHARS chars and at least the last MAX_WINDOW_CHARS after
them, so any `max_output_chars` can be shown as 40 % head and 60 % tail. The log is written in a
thread in batches (never on the event loop) through an fd the race-free walk opened, and the
directory keeps the newest LOGS_KEPT logs.
"""

import asyncio
import codecs
import contextlib
import itertools
import os

from services.tools import fs
from services.tools.results import HEAD_SHARE
from services.tools.workspace import ToolCall

LOG_DIR = ".stellaclaw/shell"
LOG_LIMIT_BYTES = 32 * 1024 * 1024
LOGS_KEPT = 100  # older logs of the workspace are removed when a new one starts
PRUNE_EVERY = 16  # logs opened (in this process) between two prunings of a workspace's logs
FLUSH_BYTES = 256 * 1024
MAX_WINDOW_CHARS = 100_000  # the largest max_output_chars
_opened = itertools.count(1)


class Window:
    """What came since the last read: head and tail kept, the middle counted."""

    def __init__(self) -> None:
        self.head = ""
        self.tail = ""
        self.total_chars = 0

    def take(self, text: str) -> None:
        self.total_chars += len(text)
        room = MAX_WINDOW_CHARS - len(self.head)
        self.head += text[:room]
        self.tail += text[room:]
        if len(self.tail) > 2 * MAX_WINDOW_CHARS:  # trimmed now and then, not on every chunk
            self.tail = self.tail[-MAX_WINDOW_CHARS:]

    def text(self, max_chars: int) -> str:
        """The window for the model: whole, or cut around `…[<n> chars omitted]…`."""
        whole = self.head + self.tail  # the middle may be gone already
        if self.total_chars <= max_chars:
            return whole
        head = int(max_chars * HEAD_SHARE)
        tail = max_chars - head
        omitted = self.total_chars - head - tail
        return f"{whole[:head]}…[{omitted} chars omitted]…{whole[-tail:]}"


class Output:
    """One command's output: the window, and the log on disk."""

    def __init__(self, log_fd: int, log_path: str) -> None:
        self.log_path = log_path
        self.log_truncated = False
        self.window = Window()
        self._log_fd = log_fd
        self._accepted = 0  # bytes taken for the log, written or pending
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flushing: asyncio.Future[None] | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes) -> None:
        self.window.take(self._decoder.decode(chunk))
        room = LOG_LIMIT_BYTES - self._accepted
        if len(chunk) > room:
            self.log_truncated = True
            chunk = chunk[: max(room, 0)]
        self._accepted += len(chunk)
        if chunk:
            self._pending.append(chunk)
            self._pending_bytes += len(chunk)
        if self._pending_bytes >= FLUSH_BYTES and self._flushing is None:
            self._flushing = asyncio.ensure_future(self.flush())

    def read(self, max_chars: int) -> tuple[str, int]:
        """The unread output for the model and its length in chars; the window starts anew."""
        text, total = self.window.text(max_chars), self.window.total_chars
        self.window = Window()
        return text, total

    async def flush(self) -> None:
        """Write what is pending to the log (in a thread)."""
        chunks, self._pending, self._pending_bytes = self._pending, [], 0
        try:
            if chunks and self._log_fd >= 0:
                data = b"".join(chunks)
                await asyncio.to_thread(_write_all, self._log_fd, data)
        finally:
            self._flushing = None

    async def close(self) -> None:
        """The decoder's last bytes into the window, the rest of the log written, the fd closed."""
        self.window.take(self._decoder.decode(b"", final=True))
        if self._flushing is not None:
            await self._flushing
        await self.flush()
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def open_log(call: ToolCall, name: str) -> tuple[int, str]:
    """The log `<name>.log` opened for writing (race-free, its directory made); every
    PRUNE_EVERY logs the workspace's oldest beyond LOGS_KEPT are removed. Blocks."""
    path = f"{LOG_DIR}/{name}.log"
    fd, _ = fs.open_file(call, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    if next(_opened) % PRUNE_EVERY == 0:
        _prune(call)
    return fd, path


def _prune(call: ToolCall) -> None:
    directory = fs.open_dir(call, LOG_DIR, is_write=True)
    try:
        names = [name for name in os.listdir(directory) if name.endswith(".log")]
        if len(names) <= LOGS_KEPT:
            return
        aged: list[tuple[int, str]] = []
        for name in names:  # another call may prune at the same time: gone names are skipped
            with contextlib.suppress(OSError):
                aged.append(
                    (os.stat(name, dir_fd=directory, follow_symlinks=False).st_mtime_ns, name)
                )
        aged.sort()
        for _, name in aged[: len(aged) - LOGS_KEPT]:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=directory)
    finally:
        os.close(directory)
