"""`shell` (SPEC §5.2): a command with `bash -c` in a fresh process; one still running after
`wait_s` becomes shell session `sh<n>`, which later calls poll (`session`), write to (`input`,
with `tty`) and close (`shell_close`).

The output the model sees keeps 40 % head and 60 % tail of `max_output_chars`; the whole output
goes to `.stellaclaw/shell/<call_id>.log` (up to 32 MiB).
"""

import asyncio
import os
import posixpath
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from services.tools import fs, handles
from services.tools.builtin.shell_output import Output, open_log
from services.tools.builtin.shell_sessions import (
    HELD_KIND,
    MAX_RUNNING,
    Controls,
    Sessions,
    ShellSession,
    Start,
    local,
)
from services.tools.results import Result, ToolError
from services.tools.sandbox import launch as commands
from services.tools.workspace import RemoteTarget, ToolCall, relative, remote_for

DEFAULT_OUTPUT_CHARS = 20_000
SETTLE_S = 10.0  # beyond the wait (or the command's kill grace), before the runner's limit


class ShellArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Run a command with `bash -c` in a fresh process in the workspace (stdout and stderr
    merged); the working directory and variables do not carry over between calls. A command
    still running after wait_s keeps running as shell session `sh<n>`: call shell again with
    `session` to read its new output (and wait up to wait_s for its end), with `input` to write
    to it (needs tty=true), and end it with shell_close."""

    command: Annotated[
        str, Meta(min_length=1, description="the command line, run with bash -c")
    ] | (UnsetType) = UNSET
    session: Annotated[str, Meta(description="a running shell session to poll or write to")] | (
        UnsetType
    ) = UNSET
    input: Annotated[str, Meta(description="written to the session's stdin as given")] | (
        UnsetType
    ) = UNSET
    workdir: Annotated[
        str, Meta(description="where to run it, relative to the workspace (default: its root)")
    ] = "."
    wait_s: Annotated[
        float, Meta(ge=0, le=300, description="seconds to wait before returning a running command")
    ] = 30.0
    timeout_s: Annotated[
        float, Meta(ge=1, le=86_400, description="seconds until the process group is killed")
    ] = 1800.0
    tty: Annotated[bool, Meta(description="run on a 100x30 pseudo-terminal; keeps stdin open")] = (
        False
    )
    max_output_chars: Annotated[
        int, Meta(ge=1000, le=100_000, description="longer output keeps its head and tail")
    ] = DEFAULT_OUTPUT_CHARS


class ShellResult(Result, frozen=True, kw_only=True):
    running: bool
    session: str | None = None
    exit_code: int | None = None
    signal: str | None = None  # the signal that ended the command, e.g. SIGTERM
    timed_out: bool | None = None  # set once the command ended
    duration_s: float
    output: str
    output_truncated: bool
    total_output_chars: int
    log_path: str
    log_truncated: bool = False
    workdir: str
    interrupted: bool = False  # a follow-up or /cancel cut the wait short


def time_limit_s(args: ShellArgs) -> float:
    """The call's hard limit: its wait (or the command's timeout and kill grace) and some slack."""
    return min(args.wait_s, args.timeout_s + commands.KILL_AFTER_S) + SETTLE_S


def sessions_of(call: ToolCall) -> Sessions:
    return call.runner.held(HELD_KIND, call.conversation_id, Sessions)


async def shell(args: ShellArgs, call: ToolCall) -> ShellResult:
    if isinstance(args.session, str):
        if isinstance(args.command, str):
            raise ToolError("invalid_arguments", "give command or session, not both")
        return await poll(args, args.session, call)
    if isinstance(args.input, str):
        raise ToolError("invalid_arguments", "input needs session (a running shell session)")
    if not isinstance(args.command, str):
        raise ToolError("invalid_arguments", "give command to run, or session to poll")
    return await start(args, args.command, call)


async def start(args: ShellArgs, command: str, call: ToolCall) -> ShellResult:
    sessions = sessions_of(call)
    if len(sessions.running) >= MAX_RUNNING:
        message = f"{MAX_RUNNING} shell sessions are running; close some with shell_close"
        raise ToolError("limit_reached", message)
    target = remote_for(call, args.workdir)
    if target is not None:
        log_fd, log_path = await asyncio.to_thread(open_log, call, call.call_id)
        where = posixpath.normpath(posixpath.join(target.root, args.workdir))
        shown, start = where, remote_start(call, target, command, where, args)
    else:
        cwd, log_fd, log_path = await asyncio.to_thread(_prepare, call, args.workdir)
        launch = commands.Launch(
            command=command,
            cwd=cwd,
            workspace=call.root,
            shared=call.shared,
            conversation_id=call.conversation_id,
            timeout_s=args.timeout_s,
            mode=call.mode,
            host=call.host,
            tty=args.tty,
        )
        shown, start = relative(call, cwd), local(launch)
    session = ShellSession(command, start, Output(log_fd, log_path))
    try:
        ended = await session.wait(args.wait_s, call.cut_short)
    except asyncio.CancelledError:  # the call is cancelled: its command goes with it
        await session.end()
        raise
    if not ended:
        started_at = time.time() - session.running_s
        session.name = await asyncio.to_thread(handles.allocate, call, "sh", command, started_at)
        sessions.running[session.name] = session
    return result_of(session, args, shown, call)


def remote_start(
    call: ToolCall, target: RemoteTarget, command: str, cwd: str, args: ShellArgs
) -> tuple[Start, Controls]:
    """How a command runs on the call's SSH remote (SPEC §6.6): `cd <dir> && exec timeout`."""
    from services.tools.remote import commands as remote_commands  # asyncssh: remote calls only

    launch = remote_commands.RemoteLaunch(
        command=command,
        cwd=cwd,
        timeout_s=args.timeout_s,
        env={"STELLACLAW_WORKSPACE": target.root, "STELLACLAW_CONVERSATION": call.conversation_id},
        tty=args.tty,
    )
    remotes = call.runner.remotes()

    async def start(sink: Callable[[bytes], None], controls: Controls) -> commands.Exit:
        assert isinstance(controls, remote_commands.RemoteControls)
        return await remote_commands.run(remotes, target.name, launch, sink, controls)

    return start, remote_commands.RemoteControls()


def _prepare(call: ToolCall, workdir: str) -> tuple[Path, int, str]:
    """The command's directory (walked race-free) and its log, opened. Blocks."""
    if workdir in ("", "."):  # the workspace root itself: resolved when the call was prepared
        log_fd, log_path = open_log(call, call.call_id)
        return call.root, log_fd, log_path
    try:
        fd = fs.open_dir(call, workdir)
    except ToolError as exc:
        if exc.kind not in ("not_found", "invalid_arguments"):
            raise
        message = f"workdir {workdir} is not a directory in the workspace"
        raise ToolError("not_found", message) from None
    try:
        cwd = Path(os.readlink(f"/proc/self/fd/{fd}"))
    finally:
        os.close(fd)
    log_fd, log_path = open_log(call, call.call_id)
    return cwd, log_fd, log_path


async def poll(args: ShellArgs, name: str, call: ToolCall) -> ShellResult:
    """Read a session's new output (after writing `input`), waiting up to `wait_s` for its end."""
    sessions = sessions_of(call)
    record = await asyncio.to_thread(handles.read, call, name)
    if record is not None and record.ended:
        raise ToolError("not_found", f"shell session {name} has ended{_how(record)}")
    is_mine = record is not None and record.runner_id == call.runner.runner_id
    if record is None or (is_mine and name not in sessions.running):
        raise ToolError("not_found", f"unknown shell session: {name}; running: {sessions.names()}")
    if record.runner_id != call.runner.runner_id:
        raise handles.HeldElsewhereError(record.runner_id, f"shell session {name}")
    session = sessions.running[name]
    if isinstance(args.input, str):
        if session.controls.fd < 0:
            message = (
                f"session {name} has no open stdin; start the command with tty=true"
                " to interact with it"
            )
            raise ToolError("invalid_arguments", message)
        await session.controls.write(args.input.encode())
    ended = await session.wait(args.wait_s, call.cut_short)
    result = result_of(session, args, ".", call)
    if ended:
        del sessions.running[name]
        await asyncio.to_thread(handles.write, call, name, _ended_record(call, result))
    return result


def result_of(session: ShellSession, args: ShellArgs, workdir: str, call: ToolCall) -> ShellResult:
    """What the model reads: the output since the last read, and how the command ended if it did
    (else the session's name, and whether a follow-up cut the wait short)."""
    output, total = session.output.read(args.max_output_chars)
    found = ShellResult(
        running=True,
        session=session.name or None,
        duration_s=session.running_s,
        output=output,
        output_truncated=total > args.max_output_chars,
        total_output_chars=total,
        log_path=session.output.log_path,
        log_truncated=session.output.log_truncated,
        workdir=workdir,
        interrupted=call.cut_short.is_set(),
    )
    end = session.exit
    if end is None:
        return found
    code = end.returncode
    return msgspec.structs.replace(
        found,
        running=False,
        exit_code=code if code >= 0 else 128 - code,
        signal=signal.Signals(-code).name if code < 0 else None,
        timed_out=end.timed_out,
        interrupted=False,
    )


def _ended_record(call: ToolCall, result: ShellResult) -> handles.Record:
    return handles.Record(
        runner_id=call.runner.runner_id,
        ended=True,
        exit_code=result.exit_code,
        signal=result.signal,
    )


def _how(record: handles.Record) -> str:
    if record.exit_code is None:
        return ": its runner restarted" if record.signal is None else f" ({record.signal})"
    return f" (exit code {record.exit_code})"
