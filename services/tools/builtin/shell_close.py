"""`shell_close` (SPEC §5.2): end a shell session and return its unread output."""

import asyncio
import signal
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.tools import handles
from services.tools.builtin.shell import DEFAULT_OUTPUT_CHARS, sessions_of
from services.tools.results import Result, ToolError
from services.tools.workspace import ToolCall

Signal = Literal["int", "term", "kill"]
SIGNALS = {"int": signal.SIGINT, "term": signal.SIGTERM, "kill": signal.SIGKILL}


class ShellCloseArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """End a running shell session: `term` (the default) sends SIGTERM and SIGKILL 5 s later,
    `int` sends SIGINT (Ctrl-C), `kill` sends SIGKILL. Returns the output not read yet."""

    session: Annotated[str, Meta(min_length=1, description="the shell session, e.g. sh3")]
    signal: Annotated[Signal, Meta(description="int, term (default) or kill")] = "term"


class ShellCloseResult(Result, frozen=True, kw_only=True):
    session: str
    closed: bool
    exit_code: int | None = None  # once the command ended
    signal: Signal
    output: str


async def shell_close(args: ShellCloseArgs, call: ToolCall) -> ShellCloseResult:
    name = args.session
    sessions = sessions_of(call)
    record = await asyncio.to_thread(handles.read, call, name)
    if record is not None and record.runner_id != call.runner.runner_id and not record.ended:
        raise handles.HeldElsewhereError(record.runner_id, f"shell session {name}")
    session = sessions.running.get(name)
    if session is None:
        if record is not None and record.ended:
            raise ToolError("not_found", f"shell session {name} has already ended")
        raise ToolError("not_found", f"unknown shell session: {name}; running: {sessions.names()}")
    await session.close(SIGNALS[args.signal])
    end = session.exit
    code = None
    if end is not None:
        del sessions.running[name]
        code = end.returncode if end.returncode >= 0 else 128 - end.returncode
        ended = handles.Record(runner_id=call.runner.runner_id, ended=True, exit_code=code)
        await asyncio.to_thread(handles.write, call, name, ended)
    output, _ = session.output.read(DEFAULT_OUTPUT_CHARS)
    return ShellCloseResult(
        session=name, closed=end is not None, exit_code=code, signal=args.signal, output=output
    )
