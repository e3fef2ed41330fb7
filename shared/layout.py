"""Streams, KV buckets and the object store, created idempotently (DESIGN §3).

`add_stream` with the same config is a no-op; a changed config is updated, except SC_IN's subject
transform: changing it re-routes messages in flight and breaks per-conversation order, so a mismatch
refuses to start instead.
"""

import logging

from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError

from shared import subjects
from shared.errors import ConfigError

DAY_S = 86_400.0
DEDUPE_WINDOW_S = 600.0
STREAM_EXISTS = 10058
log = logging.getLogger(__name__)


def streams(in_partitions: int) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=subjects.IN_STREAM,
            subjects=[subjects.INBOUND_ALL],
            subject_transform=SubjectTransform(
                src=subjects.INBOUND_ALL, dest=subjects.inbound_transform(in_partitions)
            ),
            max_age=7 * DAY_S,
            duplicate_window=DEDUPE_WINDOW_S,
        ),
        _limits(subjects.SESSION_STREAM, subjects.SESSION_INPUTS_ALL, 7 * DAY_S),
        StreamConfig(
            name=subjects.TOOL_STREAM,
            subjects=[subjects.TOOL_REQUESTS_ALL],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=DEDUPE_WINDOW_S,
        ),
        _limits(subjects.TOOL_RESULT_STREAM, subjects.TOOL_RESULTS_ALL, DAY_S),
        _limits(subjects.HISTORY_STREAM, subjects.HISTORY_ALL, 0.0),
        _limits(subjects.OUT_STREAM, subjects.OUTBOUND_ALL, DAY_S),
        _limits(subjects.EVENTS_STREAM, subjects.EVENTS_ALL, DAY_S),
    ]


def _limits(name: str, subject: str, max_age_s: float) -> StreamConfig:
    return StreamConfig(
        name=name, subjects=[subject], max_age=max_age_s, duplicate_window=DEDUPE_WINDOW_S
    )


BUCKETS = [
    KeyValueConfig(bucket=subjects.CONV_BUCKET, history=5),
    KeyValueConfig(bucket=subjects.DELIVERY_BUCKET, ttl=7 * DAY_S),
    KeyValueConfig(bucket=subjects.INGRESS_BUCKET),
]


async def ensure(js: JetStreamContext, in_partitions: int) -> None:
    """Create or update every stream and bucket; refuse a changed SC_IN partitioning."""
    for config in streams(in_partitions):
        await _ensure_stream(js, config)
    for bucket in BUCKETS:
        try:
            await js.key_value(bucket.bucket)
        except BucketNotFoundError:
            await js.create_key_value(bucket)
    try:
        await js.object_store(subjects.FILES_STORE)
    except (BucketNotFoundError, NotFoundError):
        await js.create_object_store(subjects.FILES_STORE, config=ObjectStoreConfig(ttl=30 * DAY_S))


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
        return
    except BadRequestError as exc:
        if exc.err_code != STREAM_EXISTS:
            raise
    assert config.name is not None
    existing = (await js.stream_info(config.name)).config
    if config.name == subjects.IN_STREAM and existing.subject_transform != config.subject_transform:
        current = existing.subject_transform.dest if existing.subject_transform else "none"
        raise ConfigError(
            f"config: bus.in_partitions: stream {config.name} exists with transform "
            f"{current!r}; changing the partition count would break per-conversation order"
        )
    log.info("updating stream %s to the current layout", config.name)
    await js.update_stream(config)
