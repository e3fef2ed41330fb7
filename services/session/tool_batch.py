"""One tool batch (SPEC §3.3): consecutive parallel calls together, at most
`agent.max_parallel_tools` at a time; a serial call alone, after every earlier one; results in the
order the model asked for them.

A call is waited for until the limit its runner announced when it started it (ToolStarted) plus a
margin; a call no runner has started yet, until its own timeout plus the margin.
"""

import asyncio
import logging
from collections.abc import Mapping

import msgspec

from services.session.tool_results import Results
from shared import bus, subjects
from shared.ids import ConversationId, SessionId, ToolCallId
from shared.messages.contract import Workspace
from shared.messages.history import ToolCall, ToolResult
from shared.messages.tools import RunTool, ToolFailed, ToolFinished, ToolStarted, ToolTraits

MAX_RESULTS_BYTES = 900 * 1024  # one batch's results are one history event; NATS takes <= 1 MiB
RESULT_MARGIN_S = 30.0  # past a call's own limit: the runner's kill grace and the result's way back
log = logging.getLogger(__name__)


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """Where a batch runs: the session, its conversation's workspace and the runner pool."""

    session_id: SessionId
    conversation_id: ConversationId
    workspace: Workspace
    timeout_s: float = 1800.0
    max_parallel: int = 8


def failed(call: ToolCall, error: str, kind: str) -> ToolResult:
    content = msgspec.json.encode({"error": error, "error_kind": kind}).decode()
    return ToolResult(call_id=call.call_id, tool=call.name, content=content, is_error=True)


def as_result(call: ToolCall, finished: ToolFinished) -> ToolResult:
    match finished.result:
        case ToolFailed(error=error, error_kind=kind):
            return failed(call, error, kind)
        case succeeded:
            content = bytes(succeeded.output).decode()
            return ToolResult(call_id=call.call_id, tool=call.name, content=content)


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


async def run(
    batch: Batch, calls: list[ToolCall], results: Results, traits: Mapping[str, ToolTraits]
) -> list[ToolResult]:
    """Run every call of the batch; a call the model malformed is answered without running."""
    done: dict[ToolCallId, ToolResult] = {}
    valid: list[ToolCall] = []
    arguments: dict[ToolCallId, msgspec.Raw] = {}
    for call in calls:
        parsed = arguments_of(call)
        if isinstance(parsed, str):
            done[call.call_id] = failed(call, parsed, "invalid_arguments")
        else:
            arguments[call.call_id] = parsed
            valid.append(call)
    if valid:
        await results.open()
    for group in groups(valid, traits):
        waiting = list(group)
        running: dict[ToolCallId, Pending] = {}
        while waiting or running:
            while waiting and len(running) < batch.max_parallel:
                call = waiting.pop(0)
                await _send(results.conn, batch, call, arguments[call.call_id])
                deadline = _now() + batch.timeout_s + RESULT_MARGIN_S
                running[call.call_id] = Pending(call=call, deadline=deadline)
            await _settle(results, running, done)
    return [done[call.call_id] for call in calls]


async def _send(conn: bus.Connection, batch: Batch, call: ToolCall, arguments: msgspec.Raw) -> None:
    request = RunTool(
        session_id=batch.session_id,
        conversation_id=batch.conversation_id,
        call_id=call.call_id,
        tool=call.name,
        arguments=arguments,
        workspace=batch.workspace,
        timeout_s=batch.timeout_s,
    )
    subject = subjects.tool_request(batch.workspace.pool, batch.session_id)
    msg_id = subjects.tool_request_msg_id(batch.session_id, call.call_id)
    await bus.publish(conn, subject, request, msg_id=msg_id)


async def _settle(
    results: Results, running: dict[ToolCallId, Pending], done: dict[ToolCallId, ToolResult]
) -> None:
    """Take the next start or result of a running call, or end the calls past their deadline."""
    try:
        event = await results.next(min(p.deadline for p in running.values()) - _now())
    except TimeoutError:
        for call_id, late in list(running.items()):
            if late.deadline <= _now():
                del running[call_id]
                done[call_id] = failed(late.call, "no result came in time", "timed_out")
                log.warning("no result for %s by its deadline", call_id)
        return
    pending = running.get(event.call_id) if event is not None else None
    match event:
        case ToolStarted(limit_s=limit_s) if pending is not None:
            pending.deadline = _now() + limit_s + RESULT_MARGIN_S
        case ToolFinished() if pending is not None:
            del running[event.call_id]
            done[event.call_id] = as_result(pending.call, event)
        case _:  # bad data, or a call of another batch (a late result): not ours to wait for
            pass


def _now() -> float:
    return asyncio.get_running_loop().time()
