"""What `stellaclaw status` reads, on one observer connection, all at once.

Instances: every answer to one `$SRV.STATS` broadcast within `instance_wait_s` (nats.micro; the
data of each service's endpoint holds its counters, its metadata the host and pid). Streams and
consumers: the JetStream API. Leases: each key's last message in KV `sc_lease` (a watch would
need CONSUMER.CREATE). Turns running: the session instances' `turns_running` gauge. Dead letters
and bad messages: SC_EVENTS' per-subject counts (it keeps a day).
"""

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.aio.client import Client

from services.launcher import bus_reads, discovery
from services.launcher import status_report as report
from services.launcher.bus_reads import ConsumerInfo, StreamInfo
from shared import leases, subjects

INSTANCE_WAIT_S = 1.0
READS_AT_ONCE = 64  # lease values asked at once
KV_DELETED = ("KV-Operation", "Nats-Marker-Reason")  # a delete or purge; an expired lease


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    data: Any = None  # a Stellaclaw service's counters; anything from another micro service


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a nats.micro `$SRV.STATS` answer that `status` shows."""

    name: str
    instance_id: str = msgspec.field(name="id")
    version: str = ""
    started: datetime | None = None
    endpoints: list[Endpoint] | None = None
    metadata: dict[str, str] | None = None


_STATS: msgspec.json.Decoder[Stats] = msgspec.json.Decoder(Stats)


class Probe(msgspec.Struct, frozen=True, kw_only=True):
    """What to look for, and how patiently."""

    expected: tuple[str, ...]
    stuck_after_s: float = 60.0
    instance_wait_s: float = INSTANCE_WAIT_S


async def survey(nc: Client, probe: Probe) -> report.Report:
    """Everything `status` shows, asked at once (the instances' answers take the longest)."""
    instances, (streams, consumers, durables), dead, bad, held = await asyncio.gather(
        gather_instances(nc, probe.instance_wait_s),
        lag(nc, probe.stuck_after_s),
        event_count(nc, subjects.DEAD_LETTER_EVENT),
        event_count(nc, subjects.BAD_MESSAGE_EVENT),
        held_leases(nc),
    )
    return report.Report(
        bus=where(nc),
        at=datetime.now(UTC),
        stuck_after_s=probe.stuck_after_s,
        expected=list(probe.expected),
        instances=instances,
        streams=[stream(info) for info in streams],
        durables=durables,
        ephemeral_consumers=len(consumers) - len(durables),
        leases=held,
        turns_running=report.turns_running(instances),
        dead_letters=dead,
        bad_messages=bad,
        problems=report.problems(probe.expected, instances, durables),
    )


def where(nc: Client) -> str:
    """The server this connection reached, without any credentials the URL held."""
    url = nc.connected_url
    return f"{url.scheme}://{url.hostname}:{url.port}" if url else "-"


async def lag(
    nc: Client, stuck_after_s: float
) -> tuple[list[StreamInfo], list[ConsumerInfo], list[report.Durable]]:
    """Every stream, every consumer, and each durable's lag."""
    streams = await bus_reads.streams(nc)
    listed = await asyncio.gather(*(bus_reads.consumers(nc, s.config.name) for s in streams))
    consumers = [info for infos in listed for info in infos]
    durables = await asyncio.gather(
        *(durable(nc, info, stuck_after_s) for info in consumers if info.config.durable_name)
    )
    return streams, consumers, list(durables)


async def gather_instances(nc: Client, wait_s: float) -> list[report.Instance]:
    """Every answer to one `$SRV.STATS` broadcast within `wait_s` (`nc.request` keeps one)."""
    answers = await discovery.gather(nc, "$SRV.STATS", _STATS, wait_s)
    found = [instance(stats) for stats in answers]
    return sorted(found, key=lambda one: (one.service, one.host, one.pid or 0, one.instance_id))


def instance(stats: Stats) -> report.Instance:
    metadata = stats.metadata or {}
    counters: dict[str, int] = {}
    for endpoint in stats.endpoints or []:
        if isinstance(endpoint.data, dict):
            counters |= {
                str(k): v
                for k, v in endpoint.data.items()
                if type(v) is int  # not a bool
            }
    pid = metadata.get("pid", "")
    return report.Instance(
        service=stats.name,
        instance_id=stats.instance_id,
        version=stats.version,
        host=metadata.get("host", ""),
        pid=int(pid) if pid.isdigit() else None,
        started_at=stats.started,
        uptime_s=report.seconds_between(stats.started, datetime.now(UTC)),
        counters=counters,
        metadata={k: v for k, v in metadata.items() if k not in ("host", "pid")},
    )


def stream(info: StreamInfo) -> report.Stream:
    state = info.state
    return report.Stream(
        name=info.config.name,
        messages=state.messages,
        bytes=state.bytes,
        consumers=state.consumer_count,
        first_seq=state.first_seq,
        last_seq=state.last_seq,
    )


async def durable(nc: Client, info: ConsumerInfo, stuck_after_s: float) -> report.Durable:
    """A durable's lag; with work waiting, also how long the oldest waiting message has."""
    now = info.ts or datetime.now(UTC)
    waited_s = None
    if info.num_pending > 0:
        query = {
            "seq": info.delivered.stream_seq + 1,
            "next_by_subj": info.config.filter_subject or ">",
        }
        oldest = await bus_reads.stored(nc, info.stream_name, query)
        waited_s = None if oldest is None else report.seconds_between(oldest.time, now)
    found = report.Durable(
        stream=info.stream_name,
        durable=info.name,
        filter_subject=info.config.filter_subject,
        pending=info.num_pending,
        ack_pending=info.num_ack_pending,
        redelivered=info.num_redelivered,
        waiting=info.num_waiting,
        idle_s=report.idle_s(info, now),
        waited_s=waited_s,
    )
    return msgspec.structs.replace(found, is_stuck=report.is_stuck(found, stuck_after_s))


async def event_count(nc: Client, subject: str) -> int:
    """How many facts SC_EVENTS holds on `subject`."""
    counts = await bus_reads.subject_counts(nc, subjects.EVENTS_STREAM, subject)
    return sum(counts.values())


async def held_leases(nc: Client) -> list[report.Lease]:
    """Every lease held now: each key's last value, past releases and expiries."""
    stream = bus_reads.kv_stream(subjects.LEASE_BUCKET)
    prefix = bus_reads.kv_subject(subjects.LEASE_BUCKET, "")
    keys = sorted(await bus_reads.subject_counts(nc, stream, prefix + ">"))
    values: list[bus_reads.StoredMessage | None] = []
    for start in range(0, len(keys), READS_AT_ONCE):
        batch = keys[start : start + READS_AT_ONCE]
        reads = (bus_reads.stored(nc, stream, {"last_by_subj": subject}) for subject in batch)
        values += await asyncio.gather(*reads)
    found: list[report.Lease] = []
    for subject, last in zip(keys, values, strict=True):
        if last is None or not last.data or any(name in last.headers for name in KV_DELETED):
            continue  # released, expired, or gone meanwhile
        try:
            owner = msgspec.json.decode(last.data, type=leases.Owner)
        except msgspec.DecodeError:
            continue  # not a lease a Stellaclaw process wrote
        key = subject.removeprefix(prefix)
        found.append(
            report.Lease(key=key, owner_id=owner.owner_id, pid=owner.pid, revision=last.seq)
        )
    return found
