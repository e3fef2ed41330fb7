"""One tool batch (SPEC §3.3): consecutive parallel calls together, at most
`agent.max_parallel_tools` at a time; a serial call alone, after every earlier one; results in the
order the model asked for them.

A call is waited for until the limit its runner announced when it started it (ToolStarted) plus a
margin; a call no runner has started yet, until its own timeout plus the margin.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar

import msgspec
import nats.errors

from services.session import runner_watch
from services.session.heads import CallEntry
from services.session.tool_results import Results
from shared import bus, subjects
from shared.ids import ConversationId, SessionId, ToolCallId
from shared.messages.contract import Workspace
from shared.messages.history import ToolCall, ToolResult
from shared.messages.tools import (
    CancelCall,
    RunTool,
    ToolFailed,
    ToolFinished,
    ToolStarted,
    ToolTraits,
)
from shared.sandbox import SandboxSetting

MAX_RESULTS_BYTES = 900 * 1024  # one batch's results are one history event; NATS takes <= 1 MiB
RESULT_MARGIN_S = 30.0  # past a call's own limit: the runner's kill grace and the result's way back
CANCEL_TIMEOUT_S = 2.0  # SPEC §15: a cancelled call's processes are gone within 2 s
T = TypeVar("T")
log = logging.getLogger(__name__)


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """Where a batch runs: the session, its conversation's workspace and the runner pool."""

    session_id: SessionId
    conversation_id: ConversationId
    workspace: Workspace
    timeout_s: float = 1800.0
    max_parallel: int = 8
    sandbox: SandboxSetting = "auto"  # the conversation's `/sandbox` (the runner resolves auto)
    remotes: list[str] = msgspec.field(default_factory=list)  # selectable mode: the choices


def failed(call: ToolCall, error: str, kind: str) -> ToolResult:
    content = msgspec.json.encode({"error": error, "error_kind": kind}).decode()
    return ToolResult(call_id=call.call_id, tool=call.name, content=content, is_error=True)


def as_result(call: ToolCall, finished: ToolFinished) -> ToolResult:
    match finished.result:
        case ToolFailed(error=error, error_kind=kind):
            return failed(call, error, kind)
        case succeeded:
            content = bytes(succeeded.output).decode()
            return ToolResult(
                call_id=call.call_id,
                tool=call.name,
                content=content,
                attachments=succeeded.attachments,
                sends=succeeded.sends,
            )


def fitted(results: list[ToolResult]) -> list[ToolResult]:
    """The results, the longest cut in the middle until together they fit one bus message."""
    fitted = list(results)
    while len(msgspec.json.encode(fitted)) > MAX_RESULTS_BYTES:
        index = max(range(len(fitted)), key=lambda i: len(fitted[i].content))
        content = fitted[index].content
        quarter = len(content) // 4
        omitted = len(content) - 2 * quarter
        marker = f"…[{omitted} chars omitted: this batch's results were too large to keep]…"
        cut = content[:quarter] + marker + content[len(content) - quarter :]
        fitted[index] = msgspec.structs.replace(fitted[index], content=cut)
    return fitted


def arguments_of(call: ToolCall) -> msgspec.Raw | str:
    """The call's JSON object as Raw, or the reason it is not one."""
    text = call.arguments.strip() or "{}"
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        return f"the arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return f"the arguments must be a JSON object, got {type(value).__name__}"
    return msgspec.Raw(text.encode())


def groups(calls: list[ToolCall], traits: Mapping[str, ToolTraits]) -> list[list[ToolCall]]:
    """Consecutive parallel calls run together; a serial call runs alone, after all before it."""
    found: list[list[ToolCall]] = []
    for call in calls:
        is_serial = traits.get(call.name, ToolTraits()).is_serial
        if is_serial or not found or _is_serial_group(found[-1], traits):
            found.append([call])
        else:
            found[-1].append(call)
    return found


def _is_serial_group(group: list[ToolCall], traits: Mapping[str, ToolTraits]) -> bool:
    return len(group) == 1 and traits.get(group[0].name, ToolTraits()).is_serial


class Pending(msgspec.Struct, kw_only=True):
    """A call sent and not yet finished, and until when it is waited for."""

    call: ToolCall
    deadline: float


class TurnCancelledError(Exception):
    """The user cancelled the turn (SPEC §3.6)."""


Journal = Callable[[list[CallEntry]], Awaitable[None]]


def _unseen(result: ToolResult) -> None:
    return None


class Run(msgspec.Struct, kw_only=True):
    """How one batch runs: the session's tool events, traits, the turn's cancel flag, the journal
    hook that records calls before they are sent; on a takeover, calls a runner has already
    started (waited for, not sent again) and the attempt number that gives re-sent calls a
    fresh msg id."""

    results: Results
    traits: Mapping[str, ToolTraits]
    cancel: asyncio.Event
    journal: Journal
    started: Mapping[ToolCallId, float] = msgspec.field(default_factory=dict)
    attempt: int = 0
    # The interruptible calls in flight: a follow-up cuts their waits short (the actor does).
    waiting: set[ToolCallId] = msgspec.field(default_factory=set)
    settled: Callable[[ToolResult], None] = _unseen  # a call's result came (the panel)


class _State(msgspec.Struct, kw_only=True):
    watch: runner_watch.Watch
    arguments: dict[ToolCallId, msgspec.Raw] = msgspec.field(default_factory=dict)
    running: dict[ToolCallId, Pending] = msgspec.field(default_factory=dict)
    done: dict[ToolCallId, ToolResult] = msgspec.field(default_factory=dict)


async def run(batch: Batch, calls: list[ToolCall], how: Run) -> list[ToolResult]:
    """Run every call of the batch; a call the model malformed is answered without running.
    When the turn is cancelled, running calls are stopped and every unfinished one is answered
    `cancelled by user`."""
    state = _State(watch=runner_watch.Watch(how.results.conn, batch.session_id))
    valid = await _to_send(batch, calls, how, state)
    if valid:
        await how.results.open()
    try:
        for group in groups(valid, how.traits):
            waiting = list(group)
            while waiting or state.running:
                sending: list[ToolCall] = []
                while waiting and len(state.running) + len(sending) < batch.max_parallel:
                    sending.append(waiting.pop(0))
                if sending:
                    await _send_group(batch, how, sending, state)
                await _settle(how, state)
    except TurnCancelledError:
        await _cancel_running(how.results.conn, batch, list(state.running))
        for call in calls:
            state.done.setdefault(call.call_id, cancelled(call))
    finally:
        how.waiting.clear()
    return [state.done[call.call_id] for call in calls]


async def _to_send(batch: Batch, calls: list[ToolCall], how: Run, state: _State) -> list[ToolCall]:
    """The calls to send; the others answered now: malformed arguments, or no runner serving
    the pool (the model hears it at once, not after a timeout)."""
    valid: list[ToolCall] = []
    for call in calls:
        parsed = arguments_of(call)
        if isinstance(parsed, str):
            state.done[call.call_id] = failed(call, parsed, "invalid_arguments")
        else:
            state.arguments[call.call_id] = parsed
            valid.append(call)
    if valid and not await runner_watch.is_served(how.results.conn, batch.workspace.pool):
        for call in valid:
            state.done[call.call_id] = failed(call, runner_watch.no_runner(batch), "unavailable")
        return []
    return valid


async def _send_group(batch: Batch, how: Run, sending: list[ToolCall], state: _State) -> None:
    """Journal the calls as sent, then send those no runner has started yet."""
    entries = [_entry(how, p.call.call_id, p.call.name, "sent") for p in state.running.values()]
    entries += [_entry(how, call.call_id, call.name, "sent") for call in sending]
    entries += [_entry(how, r.call_id, r.tool, "finished") for r in state.done.values()]
    await how.journal(entries)
    for call in sending:
        limit = how.started.get(call.call_id)
        if limit is None:
            arguments = state.arguments[call.call_id]
            await _send(how.results.conn, batch, call, arguments, how.attempt)
            limit = batch.timeout_s
        deadline = _now() + limit + RESULT_MARGIN_S
        state.running[call.call_id] = Pending(call=call, deadline=deadline)
        if how.traits.get(call.name, ToolTraits()).mode == "interruptible":
            how.waiting.add(call.call_id)


def _entry(how: Run, call_id: str, tool: str, state: Literal["sent", "finished"]) -> CallEntry:
    idempotent = how.traits.get(tool, ToolTraits()).is_idempotent
    return CallEntry(call_id=call_id, tool=tool, state=state, idempotent=idempotent)


def cancelled(call: ToolCall) -> ToolResult:
    content = msgspec.json.encode({"error": "cancelled by user", "cancelled": True}).decode()
    return ToolResult(call_id=call.call_id, tool=call.name, content=content, is_error=True)


async def _send(
    conn: bus.Connection, batch: Batch, call: ToolCall, arguments: msgspec.Raw, attempt: int
) -> None:
    request = RunTool(
        session_id=batch.session_id,
        conversation_id=batch.conversation_id,
        call_id=call.call_id,
        tool=call.name,
        arguments=arguments,
        workspace=batch.workspace,
        timeout_s=batch.timeout_s,
        sandbox=batch.sandbox,
        remotes=batch.remotes,
    )
    subject = subjects.tool_request(batch.workspace.pool, batch.session_id)
    msg_id = subjects.tool_request_msg_id(batch.session_id, call.call_id, attempt)
    await bus.publish(conn, subject, request, msg_id=msg_id)


async def _cancel_running(conn: bus.Connection, batch: Batch, call_ids: list[ToolCallId]) -> None:
    """Ask the runners holding the calls to end them (their process groups are killed)."""

    async def cancel_one(call_id: ToolCallId) -> None:
        request = CancelCall(session_id=batch.session_id, call_id=call_id)
        subject = subjects.tool_cancel(batch.session_id, call_id)
        try:
            await conn.nc.request(subject, bus.encode(request), timeout=CANCEL_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("no runner confirmed the cancel of %s: %r", call_id, exc)

    await asyncio.gather(*(cancel_one(call_id) for call_id in call_ids))


async def _settle(how: Run, state: _State) -> None:
    """Take the next start or result of a running call; end the calls past their deadline or
    whose runner is gone (pinged every few seconds)."""
    if how.cancel.is_set():
        raise TurnCancelledError
    running, done = state.running, state.done
    try:
        deadline = min(p.deadline for p in running.values())
        if state.watch.holders:
            deadline = min(deadline, state.watch.next_ping)
        event = await until_cancelled(how.cancel, how.results.next(deadline - _now()))
    except TimeoutError:
        for call_id in await state.watch.lost():
            lost = running.pop(call_id, None)
            if lost is not None:
                done[call_id] = failed(lost.call, runner_watch.LOST, "interrupted_by_restart")
        for call_id, late in list(running.items()):
            if late.deadline <= _now():
                del running[call_id]
                done[call_id] = failed(late.call, "no result came in time", "timed_out")
                log.warning("no result for %s by its deadline", call_id)
        return
    pending = running.get(event.call_id) if event is not None else None
    match event:
        case ToolStarted(limit_s=limit_s, runner_id=runner_id) if pending is not None:
            pending.deadline = _now() + limit_s + RESULT_MARGIN_S
            state.watch.started(event.call_id, runner_id)
        case ToolFinished() if pending is not None:
            del running[event.call_id]
            state.watch.forget(event.call_id)
            how.waiting.discard(event.call_id)
            done[event.call_id] = as_result(pending.call, event)
            how.settled(done[event.call_id])
        case _:  # bad data, or a call of another batch (a late result): not ours to wait for
            pass


async def until_cancelled(cancel: asyncio.Event, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, or TurnCancelledError as soon as `cancel` is set (the work is abandoned)."""
    if cancel.is_set():
        work.close()
        raise TurnCancelledError
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the actor itself stops: the work goes with it
        task.cancel()
        raise
    finally:
        stop.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise TurnCancelledError
    return task.result()


def _now() -> float:
    return asyncio.get_running_loop().time()
