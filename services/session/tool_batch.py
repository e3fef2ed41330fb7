"""One tool batch: every call published to SC_TOOL, results collected by call id, in call order."""

import asyncio
import logging

import msgspec
from nats.aio.subscription import Subscription
from nats.js.errors import NotFoundError

from shared import bus, subjects
from shared.ids import ConversationId, SessionId, ToolCallId
from shared.messages.contract import Workspace
from shared.messages.history import ToolCall, ToolResult
from shared.messages.tools import TOOL_RESULT, RunTool, ToolFailed, ToolFinished

MAX_RESULTS_BYTES = 900 * 1024  # one batch's results are one history event; NATS takes <= 1 MiB
QUIET_CHECK_S = 5.0  # with no result for this long, read missing ones from SC_TOOLRES directly
RESULT_MARGIN_S = 60.0
log = logging.getLogger(__name__)


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """Where a batch runs: the session, its conversation's workspace and the runner pool."""

    session_id: SessionId
    conversation_id: ConversationId
    workspace: Workspace
    timeout_s: float = 1800.0


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


async def run(conn: bus.Connection, batch: Batch, calls: list[ToolCall]) -> list[ToolResult]:
    """Run every call of the batch; a call the model malformed is answered without running."""
    results: dict[ToolCallId, ToolResult] = {}
    sub = await conn.nc.subscribe(subjects.tool_results(batch.session_id))
    try:
        for call in calls:
            arguments = arguments_of(call)
            if isinstance(arguments, str):
                results[call.call_id] = failed(call, arguments, "invalid_arguments")
                continue
            await _send(conn, batch, call, arguments)
        await _collect(conn, batch, calls, results, sub)
    finally:
        await sub.unsubscribe()
    return [results[call.call_id] for call in calls]


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


async def _collect(
    conn: bus.Connection,
    batch: Batch,
    calls: list[ToolCall],
    results: dict[ToolCallId, ToolResult],
    sub: Subscription,
) -> None:
    by_id = {call.call_id: call for call in calls}
    deadline = asyncio.get_running_loop().time() + batch.timeout_s + RESULT_MARGIN_S
    bad: set[int] = set()  # stored results already reported as malformed
    while len(results) < len(calls):
        try:
            msg = await sub.next_msg(timeout=QUIET_CHECK_S)
        except TimeoutError:
            await _read_missing(conn, batch, by_id, results, bad)
            if asyncio.get_running_loop().time() > deadline:
                _give_up(by_id, results, batch.timeout_s)
            continue
        finished = await bus.decoded(conn, TOOL_RESULT, msg.data, msg.subject)
        if finished is None:  # counted and reported; the real result still comes
            continue
        if finished.call_id in by_id and finished.call_id not in results:
            results[finished.call_id] = as_result(by_id[finished.call_id], finished)


async def _read_missing(
    conn: bus.Connection,
    batch: Batch,
    by_id: dict[ToolCallId, ToolCall],
    results: dict[ToolCallId, ToolResult],
    bad: set[int],
) -> None:
    """Results are stored in SC_TOOLRES; a core message lost on the way is read from there."""
    for call_id, call in by_id.items():
        if call_id in results:
            continue
        subject = subjects.tool_result(batch.session_id, call_id)
        try:
            stored = await conn.js.get_last_msg(subjects.TOOL_RESULT_STREAM, subject)
        except NotFoundError:
            continue
        seq = stored.seq or 0
        if not stored.data or seq in bad:
            continue
        finished = await bus.decoded(conn, TOOL_RESULT, stored.data, subject, seq)
        if finished is None:
            bad.add(seq)
        elif finished.call_id == call_id:
            results[call_id] = as_result(call, finished)


def _give_up(
    by_id: dict[ToolCallId, ToolCall], results: dict[ToolCallId, ToolResult], timeout_s: float
) -> None:
    for call_id, call in by_id.items():
        if call_id not in results:
            results[call_id] = failed(call, f"timed out after {timeout_s:.0f} s", "timed_out")
