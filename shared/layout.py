"""Streams, KV buckets, the object store and every durable (DESIGN §3), made by the launcher only.

`ensure()` creates or updates each of them, so a changed setting (an ack wait, a retention) takes
effect at the next `stellaclaw up`; services only bind (DESIGN §11). SC_IN's subject transform is
the exception: changing it re-routes messages in flight and breaks per-conversation order, so a
mismatch refuses to start instead. The durables live here, beside the streams, because only the
launcher creates them and the bus permissions are generated from them (`shared/permissions.py`).
"""

import dataclasses
import logging
from collections.abc import Awaitable, Sequence

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, NotFoundError

from shared import subjects
from shared.bus import Consumer
from shared.config import BusConfig, Config
from shared.errors import ConfigError
from shared.tools_config import remote_pool

DAY_S = 86_400.0
DEDUPE_WINDOW_S = 600.0
STREAM_EXISTS = 10058
LOCAL_POOL = "local"  # the tools runners of the host that runs `stellaclaw up`
# Routing takes milliseconds; a short ack wait lets a partition whose message went to an instance
# that died mid-delivery move on soon (max_ack_pending=1 holds the partition until then).
ROUTING_ACK_WAIT_S = 10.0
LEASE_TTL_S = 15.0  # session leases (DESIGN §5), renewed every 5 s
log = logging.getLogger(__name__)


def streams(bus: BusConfig) -> list[StreamConfig]:
    """Every stream, each with `bus.replicas` replicas (its durables inherit them)."""
    found = [
        StreamConfig(
            name=subjects.IN_STREAM,
            subjects=[subjects.INBOUND_ALL],
            subject_transform=SubjectTransform(
                src=subjects.INBOUND_ALL, dest=subjects.inbound_transform(bus.in_partitions)
            ),
            max_age=7 * DAY_S,
            duplicate_window=DEDUPE_WINDOW_S,
        ),
        _limits(subjects.SESSION_STREAM, subjects.SESSION_INPUTS_ALL, 7 * DAY_S),
        StreamConfig(
            name=subjects.WAKE_STREAM,
            subjects=[subjects.WAKES_ALL],
            retention=RetentionPolicy.WORK_QUEUE,
            max_msgs_per_subject=1,  # one pending wake per session: a second is "already woken"
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
            duplicate_window=DEDUPE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.TOOL_STREAM,
            subjects=[subjects.TOOL_REQUESTS_ALL],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=DEDUPE_WINDOW_S,
        ),
        _limits(subjects.TOOL_RESULT_STREAM, subjects.TOOL_RESULTS_ALL, DAY_S),
        _limits(subjects.HISTORY_STREAM, subjects.HISTORY_ALL, bus.hist_max_age_days * DAY_S),
        _limits(subjects.OUT_STREAM, subjects.OUTBOUND_TELEGRAM, DAY_S),
        _limits(subjects.OUT_CLI_STREAM, subjects.OUTBOUND_CLI, DAY_S),
        _limits(subjects.EVENTS_STREAM, subjects.EVENTS_ALL, DAY_S),
    ]
    return [dataclasses.replace(config, num_replicas=bus.replicas) for config in found]


def _limits(name: str, subject: str, max_age_s: float) -> StreamConfig:
    return StreamConfig(
        name=name, subjects=[subject], max_age=max_age_s, duplicate_window=DEDUPE_WINDOW_S
    )


def buckets(bus: BusConfig) -> list[KeyValueConfig]:
    """Every KV bucket, each with `bus.replicas` replicas."""
    replicas = bus.replicas
    return [
        KeyValueConfig(bucket=subjects.CONV_BUCKET, history=5, replicas=replicas),
        # An expired lease leaves a marker (value None) that watchers see, as long as the TTL.
        KeyValueConfig(
            bucket=subjects.LEASE_BUCKET,
            ttl=LEASE_TTL_S,
            limit_marker_ttl=LEASE_TTL_S,
            replicas=replicas,
        ),
        KeyValueConfig(bucket=subjects.SESSION_BUCKET, history=5, replicas=replicas),
        KeyValueConfig(bucket=subjects.DELIVERY_BUCKET, ttl=7 * DAY_S, replicas=replicas),
        KeyValueConfig(bucket=subjects.PANEL_BUCKET, ttl=7 * DAY_S, replicas=replicas),
        KeyValueConfig(bucket=subjects.INGRESS_BUCKET, replicas=replicas),
        KeyValueConfig(bucket=subjects.AUTH_BUCKET, history=5, replicas=replicas),
    ]


def pools(config: Config) -> tuple[str, ...]:
    """The tool runner pools a config names: `local` and one `ssh_<name>` per remote."""
    return (LOCAL_POOL, *(remote_pool(name) for name in config.remotes))


def durables(bus: BusConfig, pools: Sequence[str] = (LOCAL_POOL,)) -> dict[str, list[Consumer]]:
    """Every durable, by the service that binds it (one message at a time where order matters);
    one tools durable per runner pool, shared by every process serving that pool."""
    routing = [
        Consumer(
            stream=subjects.IN_STREAM,
            durable=subjects.durable("conversation", f"p{partition}"),
            filter_subject=subjects.inbound_partition(partition),
            max_ack_pending=1,  # order per conversation
            ack_wait_s=ROUTING_ACK_WAIT_S,
            max_deliver=bus.max_deliver,
        )
        for partition in range(bus.in_partitions)
    ]
    wakes = Consumer(
        stream=subjects.WAKE_STREAM,
        durable=subjects.durable("session"),
        filter_subject=subjects.WAKES_ALL,
        max_deliver=bus.max_deliver,
    )
    tool_requests = [
        Consumer(
            stream=subjects.TOOL_STREAM,
            durable=subjects.durable("tools", pool),
            filter_subject=subjects.tool_requests(pool),
            max_ack_pending=256,  # shared by every process of the pool; each holds a few at once
            ack_wait_s=60.0,  # a running call heartbeats well inside it
            max_deliver=bus.max_deliver,
        )
        for pool in pools
    ]
    telegram_outputs = Consumer(
        stream=subjects.OUT_STREAM,
        durable=subjects.durable("delivery", "telegram"),
        filter_subject=subjects.outbound_channel("telegram"),
        max_ack_pending=512,  # shared by the chats' lanes, ≤ 32 each (`services/delivery/lanes`)
        ack_wait_s=15.0,  # waiting outputs heartbeat; one held by a killed process returns soon
        max_deliver=bus.max_deliver,
    )
    return {
        "conversation": routing,
        "session": [wakes],
        "tools": tool_requests,
        "delivery": [telegram_outputs],
    }


async def ensure(
    js: JetStreamContext, bus: BusConfig, pools: Sequence[str] = (LOCAL_POOL,)
) -> None:
    """Create or update every stream, bucket and durable; refuse a changed SC_IN partitioning.

    A stream or bucket laid out with other replicas is scaled to `bus.replicas`; a server that
    cannot hold them (a single server asked for 3) is a ConfigError naming `bus.replicas`.
    """
    for config in streams(bus):
        await _ensure_stream(js, config)
    for bucket in buckets(bus):
        try:
            await js.key_value(bucket.bucket)
        except BucketNotFoundError:
            await _replicated(js.create_key_value(bucket), bucket.bucket, bus.replicas)
        else:
            await _ensure_replicas(js, f"KV_{bucket.bucket}", bus.replicas)
    try:
        await js.object_store(subjects.FILES_STORE)
    except (BucketNotFoundError, NotFoundError):
        store = ObjectStoreConfig(ttl=bus.files_ttl_days * DAY_S, replicas=bus.replicas)
        created = js.create_object_store(subjects.FILES_STORE, config=store)
        await _replicated(created, subjects.FILES_STORE, bus.replicas)
    else:
        await _ensure_replicas(js, f"OBJ_{subjects.FILES_STORE}", bus.replicas)
    for consumers in durables(bus, pools).values():
        for consumer in consumers:
            await js.add_consumer(consumer.stream, consumer_config(consumer))


def consumer_config(consumer: Consumer) -> ConsumerConfig:
    """The server side of a durable. Redelivery is never capped by the server (which would drop
    a message silently): `shared.bus` dead-letters it after `max_deliver` failed handlings."""
    return ConsumerConfig(
        name=consumer.durable,
        durable_name=consumer.durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        max_ack_pending=consumer.max_ack_pending,
        ack_wait=consumer.ack_wait_s,
        filter_subject=consumer.filter_subject,
        max_deliver=-1,
    )


async def _replicated(call: Awaitable[object], name: str, replicas: int) -> None:
    """Await a create or update; the server's refusal of `replicas` is the operator's to fix."""
    try:
        await call
    except APIError as exc:
        if replicas == 1 or exc.err_code == STREAM_EXISTS:
            raise
        raise ConfigError(
            f"config: bus.replicas: NATS refused {name} with {replicas} replicas: "
            f"{exc.description} (err_code {exc.err_code}); a replicated layout needs a "
            "JetStream cluster of 3 servers, all up; else set bus.replicas = 1"
        ) from None


async def _ensure_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Scale the stream behind a bucket or object store to `replicas` (JetStream moves the data)."""
    config = (await js.stream_info(stream)).config
    if config.num_replicas != replicas:
        log.info("scaling %s from %s to %d replicas", stream, config.num_replicas, replicas)
        config.num_replicas = replicas
        await _replicated(js.update_stream(config), stream, replicas)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await _replicated(js.add_stream(config), config.name, config.num_replicas or 1)
        return
    except BadRequestError as exc:
        if exc.err_code != STREAM_EXISTS:
            raise
    existing = (await js.stream_info(config.name)).config
    if config.name == subjects.IN_STREAM and existing.subject_transform != config.subject_transform:
        current = existing.subject_transform.dest if existing.subject_transform else "none"
        raise ConfigError(
            f"config: bus.in_partitions: stream {config.name} exists with transform "
            f"{current!r}; changing the partition count would break per-conversation order"
        )
    log.info("updating stream %s to the current layout", config.name)
    await _replicated(js.update_stream(config), config.name, config.num_replicas or 1)
