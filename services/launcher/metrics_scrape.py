"""What the bus says at scrape time: every instance's `$SRV.STATS` (nats.micro; counters and
resident memory, by service and instance) and JetStream's stream and consumer state.

Instances answer on one inbox for GATHER_S (there is no last answer); an instance that stopped
answers no more, so its series go. Only durable consumers are shown (ephemeral ones, such as KV
watchers and the clients' ordered consumers, come and go with random names), and only the
streams of our layout.
"""

import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, StreamInfo

from services.launcher import discovery
from services.launcher.metrics_text import Exposition, Kind, Labels
from shared import layout, subjects
from shared.config import BusConfig

GATHER_S = 0.5  # how long `$SRV.STATS` answers are collected
PAGE = 256  # the JetStream API's list page
STATS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # nats.micro's `started`
log = logging.getLogger(__name__)


class EndpointStats(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    data: dict[str, float] | None = None


class InstanceStats(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a `$SRV.STATS` answer the metrics read."""

    name: str
    instance_id: str = msgspec.field(name="id")
    started: str = ""
    endpoints: list[EndpointStats] = msgspec.field(default_factory=list)

    @property
    def counters(self) -> dict[str, float]:
        """Our services' counters (and `rss_bytes`): the data of their `counters` endpoint."""
        for endpoint in self.endpoints:
            if endpoint.name == "counters" and endpoint.data is not None:
                return endpoint.data
        return {}


_STATS: msgspec.json.Decoder[InstanceStats] = msgspec.json.Decoder(InstanceStats)

# Counters of `$SRV.STATS` data: (metric, type, help). Dead letters and bad messages are counted
# from their facts on SC_EVENTS instead (by stream, and across restarts of the instance).
COUNTERS: dict[str, tuple[str, Kind, str]] = {
    "rss_bytes": (
        "stellaclaw_process_resident_memory_bytes",
        "gauge",
        "Resident memory of the instance's process.",
    ),
    "handled": (
        "stellaclaw_messages_handled_total",
        "counter",
        "Stream messages the instance handled and acked.",
    ),
    "failed": (
        "stellaclaw_handler_failures_total",
        "counter",
        "Handlings that raised an error (the message is retried, or dead-lettered at the limit).",
    ),
    "delivery_failed": (
        "stellaclaw_delivery_failures_total",
        "counter",
        "Outputs Telegram refused for good (the user was told).",
    ),
    "delivery_dropped": (
        "stellaclaw_delivery_dropped_total",
        "counter",
        "Outputs dropped because their chat cannot be reached (blocked, gone, bot removed).",
    ),
    "permission_violations": (
        "stellaclaw_permission_violations_total",
        "counter",
        "Bus permission violations the instance's login met.",
    ),
    "calls_running": (
        "stellaclaw_tool_calls_running",
        "gauge",
        "Tool calls the runner is running now.",
    ),
}
FROM_EVENTS = {"bad_messages", "dead_letters"}


def our_streams(bus: BusConfig) -> frozenset[str]:
    """The streams of our layout, with those behind the KV buckets and the object store."""
    names = {config.name or "" for config in layout.streams(bus)}
    names |= {f"KV_{config.bucket}" for config in layout.buckets(bus)}
    return frozenset(names | {f"OBJ_{subjects.FILES_STORE}"})


async def instances(nc: Client, wait_s: float = GATHER_S) -> list[InstanceStats]:
    """Every instance answering `$SRV.STATS` within `wait_s`; answers of another shape are
    left out (another application's services on a shared bus)."""
    try:
        found = await discovery.gather(nc, "$SRV.STATS", _STATS, wait_s)
    except nats.errors.Error as exc:  # the connection closed: nobody is reachable
        log.warning("cannot ask for $SRV.STATS: %r", exc)
        return []
    return [stats for stats in found if stats.counters]


def write_instances(out: Exposition, found: list[InstanceStats], services: Sequence[str]) -> None:
    names = sorted({*services, *(stats.name for stats in found)})
    answering = {name: sum(stats.name == name for stats in found) for name in names}
    out.family(
        "stellaclaw_up",
        "gauge",
        "Instances of the service answering $SRV.STATS.",
        [((("service", name),), count) for name, count in answering.items()],
    )
    ordered = sorted(found, key=lambda stats: (stats.name, stats.instance_id))
    out.family(
        "stellaclaw_process_start_time_seconds",
        "gauge",
        "When the instance's service started, in seconds since the epoch.",
        [(_instance(stats), started) for stats in ordered if (started := _started(stats))],
    )
    for key, (metric, kind, help_) in COUNTERS.items():
        samples = [(_instance(s), s.counters[key]) for s in ordered if key in s.counters]
        out.family(metric, kind, help_, samples)
    others = [
        ((*_instance(stats), ("counter", key)), value)
        for stats in ordered
        for key, value in sorted(stats.counters.items())
        if key not in COUNTERS and key not in FROM_EVENTS
    ]
    if others:
        out.family(
            "stellaclaw_service_counter", "untyped", "Other counters of the instance.", others
        )


async def jetstream(
    js: JetStreamContext, streams: frozenset[str]
) -> tuple[list[StreamInfo], list[ConsumerInfo]]:
    """Our streams and their durable consumers."""
    found = [info for info in await _streams(js) if info.config.name in streams]
    consumers: list[ConsumerInfo] = []
    for info in found:
        if info.state.consumer_count:
            consumers += await _durables(js, info.config.name or "")
    return found, consumers


def write_jetstream(
    out: Exposition, streams: list[StreamInfo], consumers: list[ConsumerInfo]
) -> None:
    by_stream = sorted(streams, key=lambda info: info.config.name or "")
    stream_labels = [((("stream", info.config.name or ""),), info) for info in by_stream]
    out.family(
        "stellaclaw_stream_messages",
        "gauge",
        "Messages the stream holds.",
        [(labels, info.state.messages) for labels, info in stream_labels],
    )
    out.family(
        "stellaclaw_stream_bytes",
        "gauge",
        "Bytes the stream holds.",
        [(labels, info.state.bytes) for labels, info in stream_labels],
    )
    ordered = sorted(consumers, key=lambda info: (info.stream_name, info.name))
    for metric, help_, field in CONSUMER_GAUGES:
        samples = [(_consumer(info), getattr(info, field) or 0) for info in ordered]
        out.family(metric, "gauge", help_, samples)


CONSUMER_GAUGES = (
    (
        "stellaclaw_consumer_pending_messages",
        "Messages of the stream the durable has not delivered yet (its lag).",
        "num_pending",
    ),
    (
        "stellaclaw_consumer_ack_pending_messages",
        "Messages delivered to the durable and not acknowledged yet.",
        "num_ack_pending",
    ),
    (
        "stellaclaw_consumer_redelivered_messages",
        "Messages redelivered to the durable and not acknowledged yet.",
        "num_redelivered",
    ),
)


async def _streams(js: JetStreamContext) -> list[StreamInfo]:
    found: list[StreamInfo] = []
    while True:
        page = await js.streams_info(offset=len(found))
        found += page
        if len(page) < PAGE:
            return found


async def _durables(js: JetStreamContext, stream: str) -> list[ConsumerInfo]:
    found: list[ConsumerInfo] = []
    offset = 0
    while True:
        page = await js.consumers_info(stream, offset=offset)
        found += [info for info in page if info.config.durable_name]
        offset += len(page)
        if len(page) < PAGE:
            return found


def _instance(stats: InstanceStats) -> Labels:
    return (("service", stats.name), ("instance_id", stats.instance_id))


def _consumer(info: ConsumerInfo) -> Labels:
    return (("stream", info.stream_name), ("consumer", info.name))


def _started(stats: InstanceStats) -> float:
    with contextlib.suppress(ValueError):
        return datetime.strptime(stats.started, STATS_FORMAT).replace(tzinfo=UTC).timestamp()
    return 0.0
