"""`shell` (SPEC §5.2): one command with `bash -c` in a fresh process, run to its end.

The output the model sees keeps 40 % head and 60 % tail of `max_output_chars`; the whole output
goes to `.stellaclaw/shell/<call_id>.log` (up to LOG_LIMIT_BYTES).
"""

import asyncio
import codecs
import signal
from pathlib import Path
from types import TracebackType
from typing import Annotated, BinaryIO

import msgspec
from msgspec import Meta

from services.tools.results import HEAD_SHARE, Result, ToolError
from services.tools.sandbox import launch as commands
from services.tools.workspace import ToolCall, confine, relative

LOG_DIR = ".stellaclaw/shell"
LOG_LIMIT_BYTES = 32 * 1024 * 1024
SETTLE_S = 10.0  # beyond timeout_s and the kill grace, before the runner's own limit cuts in


class ShellArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Run a command with `bash -c` in a fresh process in the workspace and return its output
    (stdout and stderr merged). The working directory and variables do not carry over between
    calls, and processes it leaves in the background end with the call."""

    command: Annotated[str, Meta(min_length=1, description="the command line, run with bash -c")]
    workdir: Annotated[
        str, Meta(description="where to run it, relative to the workspace (default: its root)")
    ] = "."
    timeout_s: Annotated[
        float, Meta(ge=1, le=86_400, description="seconds until the process group is killed")
    ] = 1800.0
    max_output_chars: Annotated[
        int, Meta(ge=1000, le=100_000, description="longer output keeps its head and tail")
    ] = 20_000


class ShellResult(Result, frozen=True, kw_only=True):
    running: bool
    exit_code: int
    signal: str | None = None  # the signal that ended the command, e.g. SIGTERM
    timed_out: bool
    duration_s: float
    output: str
    output_truncated: bool
    total_output_chars: int
    log_path: str
    log_truncated: bool = False
    workdir: str


def time_limit_s(args: ShellArgs) -> float:
    """The call's hard limit: the command's own timeout, its kill grace, and some slack."""
    return args.timeout_s + commands.KILL_AFTER_S + SETTLE_S


async def shell(args: ShellArgs, call: ToolCall) -> ShellResult:
    cwd = confine(call, args.workdir)
    if not cwd.is_dir():
        raise ToolError("not_found", f"workdir {args.workdir} is not a directory in the workspace")
    log_path = f"{LOG_DIR}/{call.call_id}.log"
    launch = commands.Launch(
        command=args.command,
        cwd=cwd,
        workspace=call.root,
        shared=call.shared,
        conversation_id=call.conversation_id,
        timeout_s=args.timeout_s,
        mode=call.mode,
        host=call.host,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with Capture(call.root / log_path, args.max_output_chars) as capture:
        end = await commands.run(launch, capture.feed)
    code = end.returncode
    return ShellResult(
        running=False,
        exit_code=code if code >= 0 else 128 - code,
        signal=signal.Signals(-code).name if code < 0 else None,
        timed_out=end.timed_out,
        duration_s=round(loop.time() - started, 3),
        output=capture.text(),
        output_truncated=capture.total_chars > args.max_output_chars,
        total_output_chars=capture.total_chars,
        log_path=log_path,
        log_truncated=capture.log_truncated,
        workdir=relative(call, cwd),
    )


class Capture:
    """A command's output as it arrives: written to its log, and head and tail kept in memory."""

    def __init__(self, log: Path, max_chars: int) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log: BinaryIO = log.open("wb")
        self._logged_bytes = 0
        self.log_truncated = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max_chars = max_chars
        self._head = ""  # the first max_chars chars
        self._tail = ""  # at least the last 60 % of max_chars of what came after the head
        self.total_chars = 0

    def __enter__(self) -> "Capture":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._take(self._decoder.decode(b"", final=True))
        self._log.close()

    def feed(self, chunk: bytes) -> None:
        room = LOG_LIMIT_BYTES - self._logged_bytes
        if len(chunk) > room:
            self.log_truncated = True
        self._log.write(chunk[:room])
        self._logged_bytes += min(len(chunk), room)
        self._take(self._decoder.decode(chunk))

    def _take(self, text: str) -> None:
        self.total_chars += len(text)
        room = self._max_chars - len(self._head)
        self._head += text[:room]
        self._tail += text[room:]
        if len(self._tail) > 2 * self._max_chars:  # trimmed now and then, not on every chunk
            self._tail = self._tail[-self._max_chars :]

    def text(self) -> str:
        """The output for the model: whole, or cut around `…[<n> chars omitted]…`."""
        whole = self._head + self._tail  # the middle may be gone already
        if self.total_chars <= self._max_chars:
            return whole
        head = int(self._max_chars * HEAD_SHARE)
        tail = self._max_chars - head
        omitted = self.total_chars - head - tail
        return f"{whole[:head]}…[{omitted} chars omitted]…{whole[-tail:]}"
