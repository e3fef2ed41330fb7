"""`stellaclaw doctor`: are the streams, buckets and durables as `stellaclaw up` lays them out?

The expected layout is `shared.layout`'s for this config (its partitions, pools and replicas); the
server's is read as the read-only observer (STREAM.INFO, CONSUMER.INFO). SC_IN's subject transform
gets its own advice: `up` never changes it (DESIGN §3), so a changed `bus.in_partitions` must go
back.
"""

import asyncio
import re
from enum import Enum

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

from services.launcher.doctor_findings import Finding, failed, passed
from shared import layout, subjects
from shared.bus import Consumer
from shared.config import Config

# What a stream must keep as `up` makes it; a field the layout leaves unset is not compared.
STREAM_FIELDS = (
    "subjects",
    "retention",
    "subject_transform",
    "max_age",
    "max_msgs_per_subject",
    "discard",
    "discard_new_per_subject",
    "duplicate_window",
    "num_replicas",
)
CONSUMER_FIELDS = ("filter_subject", "ack_policy", "ack_wait", "max_ack_pending")
LAY_OUT = "`stellaclaw up` (or `stellaclaw migrate`) lays out the bus"
_PARTITIONS = re.compile(r"partition\((\d+),")


async def findings(js: JetStreamContext, config: Config) -> list[Finding]:
    """One line each for streams, buckets and durables when all are right, else one per problem."""
    return [
        *await stream_findings(js, config),
        *await bucket_findings(js, config),
        *await durable_findings(js, config),
    ]


async def stream_findings(js: JetStreamContext, config: Config) -> list[Finding]:
    expected = layout.streams(config.bus)
    found = await asyncio.gather(*(_stream(js, stream) for stream in expected))
    problems = [item for item in found if item is not None]
    if problems:
        return problems
    partitions = config.bus.in_partitions
    return [
        passed(
            "streams",
            f"all {len(expected)} as `stellaclaw up` makes them; "
            f"{subjects.IN_STREAM} in {partitions} partitions, its transform unchanged",
        )
    ]


async def _stream(js: JetStreamContext, expected: StreamConfig) -> Finding | None:
    name = expected.name or ""
    check = f"stream {name}"
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        return failed(check, "missing", f"{LAY_OUT}; start it")
    except (TimeoutError, nats.errors.Error) as exc:
        return failed(check, f"no answer: {exc!r}", "check the bus (see the bus line)")
    if name == subjects.IN_STREAM and info.config.subject_transform != expected.subject_transform:
        return _transform_changed(info.config, expected)
    differences = stream_differences(expected, info.config)
    if differences:
        return failed(check, "; ".join(differences), "restart `stellaclaw up` to update it")
    return None


def stream_differences(expected: StreamConfig, found: StreamConfig) -> list[str]:
    """Where the server's stream differs from the layout's, one phrase each."""
    differences = []
    for field in STREAM_FIELDS:
        want = getattr(expected, field)
        if field == "retention" and want is None:
            want = RetentionPolicy.LIMITS  # the server's default, so `up`'s too
        have = getattr(found, field)
        if want is not None and have != want:
            differences.append(f"{field} is {_shown(have)}, expected {_shown(want)}")
    return differences


def _transform_changed(found: StreamConfig, expected: StreamConfig) -> Finding:
    """The inbound stream partitions other than the config says: `up` refuses to start on it."""
    transform = found.subject_transform
    current = transform.dest if transform else "none"
    wanted = expected.subject_transform.dest if expected.subject_transform else "none"
    count = _PARTITIONS.search(current)
    fix = (
        f"set bus.in_partitions back to {count[1]}"
        if count
        else "recreate the stream with `stellaclaw migrate` after draining it"
    )
    return failed(
        f"stream {subjects.IN_STREAM}",
        f"subject transform is {current!r}, the config asks for {wanted!r}",
        f"{fix}: the partition count is fixed when the stream is made",
    )


def _shown(value: object) -> str:
    return repr(value.value) if isinstance(value, Enum) else repr(value)


async def bucket_findings(js: JetStreamContext, config: Config) -> list[Finding]:
    """The key-value buckets and the object store, each with the configured replicas."""
    replicas, names = config.bus.replicas, [b.bucket for b in layout.buckets(config.bus)]
    store = subjects.FILES_STORE
    found = await asyncio.gather(
        *(_bucket(js, f"bucket {name}", f"KV_{name}", replicas) for name in names),
        _bucket(js, f"object store {store}", f"OBJ_{store}", replicas),
    )
    problems = [item for item in found if item is not None]
    if problems:
        return problems
    return [passed("buckets", f"all {len(names)} key-value buckets and the object store are there")]


async def _bucket(js: JetStreamContext, check: str, stream: str, replicas: int) -> Finding | None:
    """A bucket (or the object store) is the stream behind it."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return failed(check, "missing", f"{LAY_OUT}; start it")
    except (TimeoutError, nats.errors.Error) as exc:
        return failed(check, f"no answer: {exc!r}", "check the bus (see the bus line)")
    if info.config.num_replicas != replicas:
        found = f"{info.config.num_replicas} replicas, the config asks for {replicas}"
        return failed(check, found, "restart `stellaclaw up` to scale it")
    return None


async def durable_findings(js: JetStreamContext, config: Config) -> list[Finding]:
    expected = [
        consumer
        for consumers in layout.durables(config.bus, layout.pools(config)).values()
        for consumer in consumers
    ]
    found = await asyncio.gather(*(_durable(js, consumer) for consumer in expected))
    problems = [item for item in found if item is not None]
    if problems:
        return problems
    return [passed("durables", f"all {len(expected)} there, each with its filter and limits")]


async def _durable(js: JetStreamContext, consumer: Consumer) -> Finding | None:
    check = f"durable {consumer.durable}"
    try:
        info = await js.consumer_info(consumer.stream, consumer.durable, timeout=5.0)
    except NotFoundError:
        return failed(check, f"missing on {consumer.stream}", f"{LAY_OUT}; start it")
    except (TimeoutError, nats.errors.Error) as exc:
        return failed(check, f"no answer: {exc!r}", "check the bus (see the bus line)")
    differences = consumer_differences(layout.consumer_config(consumer), info.config)
    if differences:
        return failed(check, "; ".join(differences), "restart `stellaclaw up` to update it")
    return None


def consumer_differences(expected: ConsumerConfig, found: ConsumerConfig) -> list[str]:
    """Where the server's durable differs from the layout's, one phrase each."""
    return [
        f"{field} is {_shown(getattr(found, field))}, expected {_shown(getattr(expected, field))}"
        for field in CONSUMER_FIELDS
        if getattr(expected, field) is not None
        and getattr(found, field) != getattr(expected, field)
    ]
