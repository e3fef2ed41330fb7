"""One RunTool from decision to ToolFinished; the consumer loop acks once it is stored.

unknown tool                               -> ToolFailed unknown_tool
side-effecting tool delivered again        -> ToolFailed interrupted_by_restart, not run
arguments that do not decode               -> ToolFailed invalid_arguments
otherwise                                  -> the tool runs under its hard time limit
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from services.tools import handles, results, workspace
from services.tools.cancellation import CallKey, Running
from services.tools.catalog import LOCAL, REMOTE_TOOLS, Started
from services.tools.context import RunnerContext
from services.tools.results import ToolError
from services.tools.sandbox.host import SandboxHost
from services.tools.tool_table import TOOLS
from shared import bus, subjects
from shared import logging as service_logging
from shared.messages.events import ToolEnded
from shared.messages.tools import (
    ErrorKind,
    RunTool,
    ToolFailed,
    ToolFinished,
    ToolStarted,
    ToolSucceeded,
)

CALLS_RUNNING = "calls_running"
HEARTBEAT_S = 15.0  # well inside the consumer's ack wait
INTERRUPTED = "interrupted by a restart; not re-run. Check its effects before repeating it."
CANCELLED = "cancelled by user"
Outcome = ToolSucceeded | ToolFailed
Forward = Callable[[RunTool, handles.HeldElsewhereError], Awaitable[Outcome]]
T = TypeVar("T")
log = logging.getLogger(__name__)


class Host(msgspec.Struct, frozen=True, kw_only=True):
    """This runner process, as each call needs it."""

    conn: bus.Connection
    runner_id: str
    workdir: Path
    sandbox: SandboxHost
    context: RunnerContext
    forward: Forward  # a call on state another runner holds goes there (`direct.forward`)
    running: Running = msgspec.field(default_factory=Running)

    @property
    def place(self) -> "Place":
        return Place(workdir=self.workdir, sandbox=self.sandbox, context=self.context)


class Hooks(msgspec.Struct, frozen=True, kw_only=True):
    """What a call tells its runner (it started, under which limit) and hears from it (its
    wait is cut short)."""

    started: Started
    cut_short: asyncio.Event = msgspec.field(default_factory=asyncio.Event)


class Place(msgspec.Struct, frozen=True, kw_only=True):
    """Where calls run: the workdir holding the workspaces, the sandbox host, the runner."""

    workdir: Path
    sandbox: SandboxHost
    context: RunnerContext = msgspec.field(default_factory=RunnerContext)


async def handle(host: Host, request: RunTool, envelope: bus.Envelope) -> None:
    """Run (or refuse) the call, heartbeating meanwhile, then publish its one ToolFinished.

    A call that really starts is announced first (ToolStarted with the limit it runs under), so
    the session waits for it exactly that long.
    """
    service_logging.session_var.set(request.session_id)
    service_logging.conv_var.set(request.conversation_id)  # the Sc-Conv of what it publishes
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def started(limit_s: float) -> None:
        announced = ToolStarted(
            session_id=request.session_id,
            call_id=request.call_id,
            tool=request.tool,
            runner_id=host.runner_id,
            limit_s=limit_s,
        )
        subject = subjects.tool_result(request.session_id, request.call_id)
        msg_id = subjects.tool_started_msg_id(request.session_id, request.call_id)
        ack = await bus.publish(host.conn, subject, announced, msg_id=msg_id)
        if ack.duplicate and claims(request):  # another delivery of the call started it
            raise ToolError("interrupted_by_restart", INTERRUPTED)

    key = (request.session_id, request.call_id)
    if (earlier := host.running.tasks.get(key)) is not None:
        # The bus delivered the call again while it runs here (it lost the delivery in a
        # restart): the run in hand publishes the one result; this delivery only waits for it.
        await with_heartbeats(asyncio.wait({earlier}), envelope)
        return
    hooks = Hooks(started=started)
    work = outcome(request, envelope.num_delivered, host.place, hooks, host.forward)
    host.conn.counters[CALLS_RUNNING] += 1  # a gauge in $SRV.STATS
    try:
        result = await cancellable(host.running, key, (work, hooks.cut_short), envelope)
    finally:
        host.conn.counters[CALLS_RUNNING] -= 1
    duration_s = round(loop.time() - began, 3)
    finished = ToolFinished(
        session_id=request.session_id,
        call_id=request.call_id,
        tool=request.tool,
        result=result,
        runner_id=host.runner_id,
        duration_s=duration_s,
    )
    await bus.publish(
        host.conn,
        subjects.tool_result(request.session_id, request.call_id),
        finished,
        msg_id=subjects.tool_result_msg_id(request.session_id, request.call_id),
    )
    await _tell_ended(host.conn, request, finished)
    kind = result.error_kind if isinstance(result, ToolFailed) else "-"
    log.info("tool finished", extra={"tool": request.tool, "call": request.call_id, "error": kind})


def claims(request: RunTool) -> bool:
    """A side effect: it runs at most once per call."""
    tool = TOOLS.get(request.tool)
    return tool is not None and not tool.traits.is_idempotent


async def _tell_ended(conn: bus.Connection, request: RunTool, finished: ToolFinished) -> None:
    """The call's end and duration for metrics, published without waiting for the ack (a lost
    fact costs a sample; a call finished again after a restart is dropped by its msg id)."""
    fact = ToolEnded(
        conversation_id=request.conversation_id,
        session_id=request.session_id,
        call_id=request.call_id,
        tool=request.tool,
        outcome="failed" if isinstance(finished.result, ToolFailed) else "succeeded",
        duration_s=finished.duration_s,
    )
    once = {subjects.MSG_ID_HEADER: subjects.tool_ended_msg_id(request.session_id, request.call_id)}
    await conn.nc.publish(
        subjects.tool_event(request.conversation_id), bus.encode(fact), headers=once
    )


async def outcome(
    request: RunTool,
    num_delivered: int,
    place: Place,
    hooks: Hooks,
    forward: Forward | None = None,
) -> Outcome:
    """What the model gets for this call; a failure is a value (STYLE 26)."""
    tool = TOOLS.get(request.tool)
    if tool is None:
        return failed("unknown_tool", f"unknown tool: {request.tool}")
    if num_delivered > 1 and not tool.traits.is_idempotent:
        return failed("interrupted_by_restart", INTERRUPTED)
    try:
        call = workspace.prepare(request, place.workdir, place.sandbox, place.context)
        arguments, chosen = take_remote(request, bytes(request.arguments), place.context)
        call = msgspec.structs.replace(
            call,
            cut_short=hooks.cut_short,
            remote=chosen or call.remote,
            claims_start=not tool.traits.is_idempotent,
        )
        result = await tool.invoke(arguments, call, hooks.started)
    except handles.HeldElsewhereError as exc:
        if forward is None:  # already forwarded once: the record and this runner disagree
            return failed("not_found", f"{exc.what} is not held by this runner")
        return await forward(request, exc)
    except ToolError as exc:
        return failed(exc.kind, str(exc))
    except OSError as exc:  # the host refused (permissions, a full disk): the model may adapt
        log.warning("%s failed on the host", request.tool, exc_info=True)
        return failed("failed", f"{request.tool} failed: {exc}")
    except Exception as exc:  # a fault of ours: the model hears of it, the runner goes on
        log.exception("%s failed unexpectedly", request.tool)
        return failed("failed", f"{request.tool} failed unexpectedly ({type(exc).__name__})")
    found = result.result if isinstance(result, results.Attached) else result
    output = results.encode(found) if chosen is None else results.with_remote(found, chosen.name)
    if isinstance(result, results.Attached):
        return ToolSucceeded(output=output, attachments=result.attachments, sends=result.sends)
    return ToolSucceeded(output=output)


def take_remote(
    request: RunTool, arguments: bytes, context: RunnerContext
) -> tuple[bytes, workspace.RemoteTarget | None]:
    """Selectable remote mode (SPEC §5.0): the `remote` argument taken out of the arguments,
    and the remote it names (None: local). Elsewhere `remote` stays in, an unknown argument."""
    if not request.remotes or request.tool not in REMOTE_TOOLS:
        return arguments, None
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return arguments, None  # the tool's own decoding says what is wrong
    if not isinstance(value, dict) or "remote" not in value:
        return arguments, None
    chosen = value.pop("remote")
    left = msgspec.json.encode(value)
    if chosen == LOCAL:
        return left, None
    if chosen not in request.remotes:
        choices = ", ".join([LOCAL, *request.remotes])
        raise ToolError("invalid_arguments", f"remote must be one of {choices}; got {chosen!r}")
    config = context.settings.remotes.get(chosen)
    if config is None:
        raise ToolError("unavailable", f"this tool runner does not serve remote {chosen}")
    return left, workspace.RemoteTarget(name=chosen, root=config.root)


def failed(kind: ErrorKind, message: str) -> ToolFailed:
    return ToolFailed(error_kind=kind, error=results.cap_error(message))


async def cancellable(
    running: Running,
    key: CallKey,
    work: tuple[Awaitable[Outcome], asyncio.Event],
    envelope: bus.Envelope | None,
) -> Outcome:
    """The call's outcome, or `cancelled` when a cancel request ended it (SPEC §3.6); heartbeats
    for `envelope` meanwhile (a forwarded call has none: its forwarder heartbeats)."""
    task: asyncio.Future[Outcome] = asyncio.ensure_future(work[0])
    running.track(key, task, work[1])
    try:
        return await (with_heartbeats(task, envelope) if envelope else task)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if key in running.cancelled and current is not None and not current.cancelling():
            return failed("cancelled", CANCELLED)
        raise  # the runner itself is stopping
    finally:
        running.forget(key)


async def with_heartbeats(work: Awaitable[T], envelope: bus.Envelope) -> T:
    """Await `work`, telling the server every HEARTBEAT_S that the message is still in hand."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_S)
            if done:
                return task.result()
            await envelope.in_progress()
    finally:
        if not task.done():  # cancelled (shutdown): let the tool clean up, e.g. kill its group
            task.cancel()
            await asyncio.wait({task})
