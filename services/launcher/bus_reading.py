"""What `stellaclaw bus tail` and `bus replay` do once their arguments are read (`bus_view`)."""

import argparse
import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import msgspec
import uvloop
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.launcher import bus_lines, bus_reads, bus_transcript, observer_login
from services.launcher.bus_lines import Filters, Seen
from services.launcher.bus_reads import StoredMessage
from shared import subjects
from shared.errors import ConfigError

AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
Write = Callable[[str], None]
ROUNDING = timedelta(microseconds=1)


class Tail(msgspec.Struct, frozen=True, kw_only=True):
    subject: str = subjects.APP_ALL
    filters: Filters = Filters()
    count: int = 0  # stop after this many lines (0: until stopped)


class Replay(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    subject: str = ">"
    since: datetime | None = None
    session: str | None = None  # SC_HIST: this session's history, as a transcript
    filters: Filters = Filters()


def main(args: argparse.Namespace) -> int:
    filters = Filters(conv=args.conv, kinds=bus_lines.kinds(args.kind), has_content=args.content)
    bus = observer_login.access(args.config, args.workdir)
    if args.bus_command == "tail":
        if not bus_lines.matches(subjects.APP_ALL, args.subject):
            raise ConfigError(
                f"bus tail: {args.subject!r} is not an app subject ({subjects.APP_ALL}), all that "
                "the observer login may read"
            )
        request = Tail(subject=args.subject, filters=filters, count=args.count)
        return uvloop.run(observer_login.observe(bus, "bus_tail", lambda c: _tail(c.nc, request)))
    asked = replay_request(args, filters)
    return uvloop.run(
        observer_login.observe(bus, "bus_replay", lambda c: replay(c.nc, asked, emit))
    )


def emit(line: str) -> None:
    print(line, flush=True)  # noqa: T201 -- the command's output, line by line


def replay_request(args: argparse.Namespace, filters: Filters) -> Replay:
    if args.session is not None and args.stream != subjects.HISTORY_STREAM:
        raise ConfigError(
            f"bus replay: --session reads {subjects.HISTORY_STREAM}, not {args.stream}"
        )
    since = None if args.since is None else since_time(args.since, datetime.now(UTC))
    return Replay(
        stream=args.stream, subject=args.subject, since=since, session=args.session, filters=filters
    )


def since_time(text: str, now: datetime) -> datetime:
    """`--since`: an age (`90s`, `15m`, `2h`, `3d`) or an ISO time (local when it names no zone)."""
    if age := AGE.match(text):
        return now - timedelta(seconds=float(age[1]) * UNIT_S[age[2]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"bus replay: --since {text!r}: expected an ISO time (2026-05-01T12:00) or an age "
            "(90s, 15m, 2h, 3d)"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


async def _tail(nc: Client, request: Tail) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready() -> None:
        print(f"tailing {request.subject}; Ctrl-C stops", file=sys.stderr, flush=True)  # noqa: T201

    await tail(nc, request, emit, stop, ready)
    return 0


async def tail(
    nc: Client, request: Tail, write: Write, stop: asyncio.Event, ready: Callable[[], None]
) -> None:
    """Write a line per live message that passes the filters, until `stop` or `count` lines;
    `ready` once the subscription is in place."""
    subscription = await nc.subscribe(request.subject)
    await nc.flush()
    ready()

    async def lines() -> None:
        shown = 0
        async for msg in subscription.messages:
            line = bus_lines.describe(live(msg), request.filters.has_content)
            if bus_lines.wanted(line, request.filters):
                write(bus_lines.render(line, request.filters.has_content))
                shown += 1
                if shown == request.count:
                    return

    reading = asyncio.create_task(lines())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        reading.cancel()
        stopping.cancel()
        await subscription.unsubscribe()


def live(msg: Msg) -> Seen:
    return Seen(
        subject=msg.subject, time=datetime.now(UTC), data=msg.data, headers=msg.headers or {}
    )


async def replay(nc: Client, request: Replay, write: Write) -> int:
    """Write the stream's stored messages that pass the filters; a session's transcript. Exit 1
    when the session asked for has no history (a mistyped id, most likely)."""
    names = [info.config.name for info in await bus_reads.streams(nc)]
    if request.stream not in names:
        raise ConfigError(
            f"bus replay: no stream {request.stream!r} on the bus; streams: {', '.join(names)}"
        )
    content = request.filters.has_content
    if request.session is not None:
        shown = 0
        walk = stored(nc, request.stream, subjects.history(request.session), request.since)
        async for found in walk:
            stamp = found.time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            for text in bus_transcript.entry(found.seq, stamp, found.data, content):
                write(text)
            shown += 1
        return 0 if shown else _no_history(request.session)
    async for found in stored(nc, request.stream, request.subject, request.since):
        line = bus_lines.describe(kept(found), content)
        if bus_lines.wanted(line, request.filters):
            write(bus_lines.render(line, content, stored=True))
    return 0


def _no_history(session: str) -> int:
    print(f"bus replay: no history of session {session!r}", file=sys.stderr)  # noqa: T201
    return 1


def kept(found: StoredMessage) -> Seen:
    return Seen(
        subject=found.subject,
        time=found.time,
        data=found.data,
        headers=found.headers,
        seq=found.seq,
    )


async def stored(
    nc: Client, stream: str, subject: str, since: datetime | None
) -> AsyncIterator[StoredMessage]:
    """The stream's messages on `subject` (a filter), oldest first, from `since` if given."""
    query: dict[str, object] = {"seq": 1, "next_by_subj": subject}
    if since is not None:
        # A stored time read back is rounded to the microsecond, up as often as down.
        start = (since - ROUNDING).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        query = {"start_time": start, "next_by_subj": subject}
    while (found := await bus_reads.stored(nc, stream, query)) is not None:
        yield found
        query = {"seq": found.seq + 1, "next_by_subj": subject}
