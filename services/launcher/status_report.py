"""What `stellaclaw status` found on the bus, and what is wrong with it: Structs and pure rules.

A consumer is stuck when work waits for it (`num_pending` > 0), the oldest waiting message has
waited at least `stuck_after_s`, and the consumer has neither delivered nor had a message
acknowledged for as long. Both ages are read on the server's clock from one sample (consumer
info's `ts`, `last_active` and the stored message's time), so `status` answers at once and a
machine with a skewed clock judges the same. Messages only in flight (`num_ack_pending`, nothing
waiting) never count as stuck: a tool call may hold one for half an hour under `in_progress`
heartbeats, which the server's counts cannot tell from a dead holder; a dead holder leaves its
service without a live instance, which is a problem of its own.
"""

from collections.abc import Iterable
from datetime import datetime

import msgspec

from services.launcher.bus_reads import ConsumerInfo

SESSION = "session"
TURNS_RUNNING = "turns_running"  # the session service's gauge in its $SRV.STATS data


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """One live service process, as its `$SRV.STATS` answer describes it."""

    service: str
    instance_id: str
    version: str
    host: str = ""
    pid: int | None = None
    started_at: datetime | None = None
    uptime_s: float | None = None
    counters: dict[str, int] = msgspec.field(default_factory=dict)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class Stream(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    messages: int
    bytes: int
    consumers: int
    first_seq: int
    last_seq: int


class Durable(msgspec.Struct, frozen=True, kw_only=True):
    """A durable consumer's lag: what waits for it, what it holds, and for how long."""

    stream: str
    durable: str
    filter_subject: str
    pending: int  # stored, not yet delivered
    ack_pending: int  # delivered, not yet acknowledged
    redelivered: int
    waiting: int  # pull requests waiting (an idle live reader holds one)
    idle_s: float  # since the last delivery or acknowledgement (or its creation)
    waited_s: float | None = None  # the oldest waiting message's age (None: nothing waits)
    is_stuck: bool = False


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """A lease held now (`sess.<session>`, `leader.<role>.<bot>`) and its holder."""

    key: str
    owner_id: str
    pid: int
    revision: int


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `status` prints; `--json` prints exactly this."""

    bus: str
    at: datetime
    stuck_after_s: float
    expected: list[str]
    instances: list[Instance]
    streams: list[Stream]
    durables: list[Durable]
    ephemeral_consumers: int  # live readers' consumers (chat clients, session actors, watchers)
    leases: list[Lease]
    turns_running: int
    dead_letters: int  # on SC_EVENTS, which keeps a day
    bad_messages: int
    problems: list[str]


def seconds_between(earlier: datetime | None, later: datetime) -> float | None:
    return None if earlier is None else max(0.0, (later - earlier).total_seconds())


def idle_s(info: ConsumerInfo, now: datetime) -> float:
    """Since the consumer last delivered or had a message acknowledged, or else was created."""
    moments = [info.delivered.last_active, info.ack_floor.last_active, info.created]
    latest = max(moment for moment in moments if moment is not None)
    return max(0.0, (now - latest).total_seconds())


def is_stuck(durable: Durable, stuck_after_s: float) -> bool:
    """Work has waited `stuck_after_s` and the consumer has not moved for as long."""
    if durable.pending <= 0 or durable.waited_s is None:
        return False
    return durable.waited_s >= stuck_after_s and durable.idle_s >= stuck_after_s


def turns_running(instances: Iterable[Instance]) -> int:
    return sum(i.counters.get(TURNS_RUNNING, 0) for i in instances if i.service == SESSION)


def problems(
    expected: Iterable[str], instances: list[Instance], durables: list[Durable]
) -> list[str]:
    """What makes `status` exit 1: a service without a live instance, a stuck consumer."""
    live = {instance.service for instance in instances}
    found = [f"{service}: no live instance" for service in expected if service not in live]
    for durable in durables:
        if durable.is_stuck:
            waited, idle = duration(durable.waited_s), duration(durable.idle_s)
            found.append(
                f"{durable.stream}/{durable.durable}: stuck: {durable.pending} waiting, the "
                f"oldest for {waited}, no progress for {idle}"
            )
    return found


def duration(seconds: float | None) -> str:
    """`42s`, `5m03s`, `2h05m`, `3d04h`; `-` for unknown."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
