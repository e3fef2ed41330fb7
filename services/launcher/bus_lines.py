"""Bus messages as readable lines, for `stellaclaw bus tail` and `bus replay`.

Each subject family is decoded with the union its subjects carry (`shared/messages/`), then
summed up by `bus_summaries`. A payload that does not decode still makes a line
(`undecodable: <reason>`), never an exception: the bus is what an operator reads when something
is wrong with it.
"""

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from services.launcher import bus_summaries as say
from shared import subjects
from shared.messages import events, history, inbound, outbound, session, tools

M = TypeVar("M")
Describe = Callable[[bytes, bool], "Described"]
WIDTH = 100


class Seen(msgspec.Struct, frozen=True, kw_only=True):
    """A message as it came: live (`seq` 0) or stored."""

    subject: str
    time: datetime
    data: bytes
    headers: dict[str, str]
    seq: int = 0


class Described(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    conv: str
    summary: str


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One message's line: what it is, whose it is, what it says."""

    seen: Seen
    kind: str
    conv: str
    trace: str
    summary: str


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    conv: str = ""
    kinds: frozenset[str] = frozenset()
    has_content: bool = False


class _Kind(msgspec.Struct, frozen=True, kw_only=True):
    kind: str = "?"


def reading(decoder: msgspec.json.Decoder[M], describe: Callable[[M, bool], str]) -> Describe:
    """Decode with the family's union, then describe; DecodeError when it does not decode."""

    def read(data: bytes, content: bool) -> Described:
        message = decoder.decode(data)
        return Described(
            kind=kind_of(message), conv=conv_of(message), summary=describe(message, content)
        )

    return read


# Which union each subject carries; SC_IN stores `sc.in.<p>.<channel>.<conv>`.
FAMILIES: tuple[tuple[tuple[str, ...], Describe], ...] = (
    ((subjects.INBOUND_ALL, subjects.INBOUND_ALL + ".*"), reading(inbound.INBOUND, say.inbound)),
    ((subjects.SESSION_INPUTS_ALL,), reading(session.SESSION_INPUT, say.session_input)),
    ((subjects.WAKES_ALL,), reading(session.WAKE, say.wake)),
    ((subjects.TOOL_REQUESTS_ALL,), reading(tools.TOOL_REQUEST, say.tool_request)),
    ((subjects.TOOL_RESULTS_ALL,), reading(tools.TOOL_EVENT, say.tool_event)),
    ((subjects.HISTORY_ALL,), reading(history.HISTORY, say.history)),
    ((subjects.OUTBOUND_TELEGRAM, subjects.OUTBOUND_CLI), reading(outbound.OUTPUT, say.output)),
    ((subjects.EVENTS_ALL,), reading(events.EVENT, say.event)),
    ((subjects.SESSION_CONTROL_ALL,), reading(session.CONTROL, say.control)),
    ((subjects.TOOL_CANCEL_ALL,), reading(tools.CANCEL_CALL, say.cancel_call)),
    ((subjects.TOOL_END_ALL,), reading(tools.END_WORK, say.end_work)),
    ((subjects.tool_catalog("*"),), reading(tools.CATALOG_REQUEST, say.list_tools)),
    ((subjects.tool_probe("*"),), reading(tools.PROBE_REQUEST, say.probe)),
    ((subjects.tool_place("*"),), reading(tools.PLACE_FILES, say.place_files)),
    ((subjects.TOOL_RUNNERS_ALL,), reading(tools.DIRECT_REQUEST, say.direct)),
)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` one or more."""
    wanted, given = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or token not in ("*", given[index]):
            return False
    return len(given) == len(wanted)


def describe(seen: Seen, content: bool) -> Line:
    """The line of one message, whatever its payload."""
    trace = seen.headers.get(subjects.TRACE_HEADER, "-")
    conv = seen.headers.get(subjects.CONV_HEADER, "")
    found = _described(seen, content)
    return Line(
        seen=seen,
        kind=found.kind,
        conv=conv or found.conv or "-",
        trace=trace,
        summary=found.summary,
    )


def _described(seen: Seen, content: bool) -> Described:
    read = next(
        (read for patterns, read in FAMILIES if any(matches(p, seen.subject) for p in patterns)),
        None,
    )
    if not seen.data:
        return Described(kind="-", conv="", summary="(empty)")
    if read is None:
        return Described(kind=_kind(seen.data), conv="", summary=f"{len(seen.data)} B")
    try:
        return read(seen.data, content)
    except msgspec.DecodeError as exc:
        return Described(kind=_kind(seen.data), conv="", summary=f"undecodable: {exc}")


def _kind(data: bytes) -> str:
    try:
        return msgspec.json.decode(data, type=_Kind).kind
    except msgspec.DecodeError:
        return "?"


def kind_of(message: Any) -> str:
    tag = message.__struct_config__.tag if isinstance(message, msgspec.Struct) else None
    return str(tag) if tag is not None else type(message).__name__


def conv_of(message: object) -> str:
    """The conversation a message names, for messages published without `Sc-Conv`."""
    match message:
        case session.HandleMessage():
            return message.message.chat.conversation_id
        case inbound.MessageReceived() | inbound.AccessRequested() | inbound.ChatRemoved():
            return message.chat.conversation_id
        case session.CancelTurn() | session.ContinueTurn() | session.CompactSession():
            return message.chat.conversation_id
        case outbound.ShowTyping() | outbound.SendReply() | outbound.SetReaction():
            return message.chat.conversation_id
        case outbound.SendFile() | outbound.ShowProgress() | outbound.StreamText():
            return message.chat.conversation_id
        case tools.RunTool() | tools.EndWork() | tools.PlaceFiles() | events.ModelUsed():
            return message.conversation_id
    return ""


def wanted(line: Line, filters: Filters) -> bool:
    if filters.conv and line.conv != filters.conv:
        return False
    return not filters.kinds or line.kind in filters.kinds


def kinds(values: Iterable[str]) -> frozenset[str]:
    """`--kind a,b --kind c` as one set."""
    return frozenset(part.strip() for value in values for part in value.split(",") if part.strip())


def render(line: Line, content: bool, *, stored: bool = False) -> str:
    """`time subject kind conv=… trace=… summary`; stored messages lead with their sequence.
    `conv=` is left out when the subject already ends with it, `trace=` when there is none.
    Without content the line fits WIDTH columns."""
    when = line.seen.time.astimezone()
    stamp = when.strftime("%m-%d %H:%M:%S") if stored else when.strftime("%H:%M:%S.%f")[:-3]
    parts = [f"#{line.seen.seq}"] if stored else []
    parts += [stamp, line.seen.subject, line.kind]
    if line.conv != "-" and not line.seen.subject.endswith(f".{line.conv}"):
        parts.append(f"conv={line.conv}")
    if line.trace != "-":
        parts.append(f"trace={line.trace}")
    text = " ".join([*parts, line.summary])
    return text if content or len(text) <= WIDTH else text[: WIDTH - 1] + "…"
