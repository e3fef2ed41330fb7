"""Read-only JetStream API requests, as the `observer` login may make them (`shared.permissions`).

Raw requests decoded into msgspec Structs rather than nats-py's JetStream manager, for two reasons:
the answers carry the server's own clock (`ts`), which says how long a consumer has been idle
without trusting this machine's clock; and a stored message is read with
`$JS.API.STREAM.MSG.GET` alone (`{"seq": n, "next_by_subj": filter}` walks a subject), so reading
needs no consumer and the observer never holds `CONSUMER.CREATE`, which would let it re-point
any service's durable (NATS-AUTH.md, pitfall 2).

A request nobody answers in time is a ConfigError (exit 2): JetStream is down, or the login lacks
the right (a denied publish only times out), and both are for the operator to fix.
"""

from datetime import datetime
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError

from shared.errors import ConfigError

API = "$JS.API"
API_TIMEOUT_S = 5.0
NOT_FOUND = 404
NO_MESSAGE = 10037  # MSG.GET found no message (a missing stream is another 404)
_ENCODER = msgspec.json.Encoder()
T = TypeVar("T")


class ApiError(msgspec.Struct, frozen=True, kw_only=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class SequenceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """How far a consumer has delivered, or acknowledged, and when it last did."""

    consumer_seq: int = 0
    stream_seq: int = 0
    last_active: datetime | None = None


class ConsumerSettings(msgspec.Struct, frozen=True, kw_only=True):
    durable_name: str = ""
    filter_subject: str = ""
    max_ack_pending: int = 0


class ConsumerInfo(msgspec.Struct, frozen=True, kw_only=True):
    stream_name: str
    name: str
    created: datetime
    config: ConsumerSettings = ConsumerSettings()
    delivered: SequenceInfo = SequenceInfo()
    ack_floor: SequenceInfo = SequenceInfo()
    num_ack_pending: int = 0
    num_redelivered: int = 0
    num_waiting: int = 0
    num_pending: int = 0
    ts: datetime | None = None  # the server's clock when it answered


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    subjects: list[str] = msgspec.field(default_factory=list)


class StreamState(msgspec.Struct, frozen=True, kw_only=True):
    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    consumer_count: int = 0
    subjects: dict[str, int] | None = None  # only when asked with a subjects filter


class StreamInfo(msgspec.Struct, frozen=True, kw_only=True):
    config: StreamSettings
    state: StreamState = StreamState()


class StoredMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message as the stream holds it (`data` and `hdrs` arrive base64, decoded here)."""

    subject: str
    seq: int
    time: datetime
    data: bytes = b""
    hdrs: bytes = b""

    @property
    def headers(self) -> dict[str, str]:
        return parse_headers(self.hdrs)


class _Page(msgspec.Struct, frozen=True, kw_only=True):
    total: int = 0
    offset: int = 0
    error: ApiError | None = None


class _StreamPage(_Page, frozen=True, kw_only=True):
    streams: list[StreamInfo] | None = None


class _ConsumerPage(_Page, frozen=True, kw_only=True):
    consumers: list[ConsumerInfo] | None = None


class _StreamAnswer(_Page, frozen=True, kw_only=True):
    config: StreamSettings | None = None
    state: StreamState = StreamState()


class _MessageAnswer(msgspec.Struct, frozen=True, kw_only=True):
    message: StoredMessage | None = None
    error: ApiError | None = None


async def ask(nc: Client, subject: str, body: dict[str, Any], answer: type[T]) -> T:
    """One JetStream API request and its decoded answer."""
    try:
        reply = await nc.request(subject, _ENCODER.encode(body), timeout=API_TIMEOUT_S)
    except NoRespondersError:
        raise ConfigError(f"bus: nothing answers {subject}: is JetStream enabled?") from None
    except TimeoutError:
        raise ConfigError(
            f"bus: no answer to {subject} within {API_TIMEOUT_S:g} s: JetStream is down, or "
            "this login may not ask it (regenerate the bus users: `stellaclaw up` does)"
        ) from None
    try:
        return msgspec.json.decode(reply.data, type=answer)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"bus: unexpected answer to {subject}: {exc}") from None


def _refuse(subject: str, error: ApiError) -> ConfigError:
    return ConfigError(f"bus: {subject} refused: {error.description} ({error.err_code})")


async def streams(nc: Client) -> list[StreamInfo]:
    """Every stream with its state, by name."""
    found: list[StreamInfo] = []
    while True:
        page = await ask(nc, f"{API}.STREAM.LIST", {"offset": len(found)}, _StreamPage)
        if page.error:
            raise _refuse(f"{API}.STREAM.LIST", page.error)
        found += page.streams or []
        if not page.streams or len(found) >= page.total:
            return sorted(found, key=lambda info: info.config.name)


async def consumers(nc: Client, stream: str) -> list[ConsumerInfo]:
    """Every consumer of `stream` (durables and the ephemeral ones of live readers)."""
    subject = f"{API}.CONSUMER.LIST.{stream}"
    found: list[ConsumerInfo] = []
    while True:
        page = await ask(nc, subject, {"offset": len(found)}, _ConsumerPage)
        if page.error:
            raise _refuse(subject, page.error)
        found += page.consumers or []
        if not page.consumers or len(found) >= page.total:
            return sorted(found, key=lambda info: info.name)


async def subject_counts(nc: Client, stream: str, subject_filter: str) -> dict[str, int]:
    """How many messages `stream` holds on each subject matching `subject_filter` ({} when the
    stream does not exist)."""
    subject = f"{API}.STREAM.INFO.{stream}"
    found: dict[str, int] = {}
    while True:
        body = {"subjects_filter": subject_filter, "offset": len(found)}
        page = await ask(nc, subject, body, _StreamAnswer)
        if page.error:
            if page.error.code == NOT_FOUND:
                return found
            raise _refuse(subject, page.error)
        more = page.state.subjects or {}
        found |= more
        if not more or len(found) >= page.total:
            return found


async def stored(nc: Client, stream: str, query: dict[str, Any]) -> StoredMessage | None:
    """The message a `STREAM.MSG.GET` query names (`seq`, `next_by_subj`, `last_by_subj`,
    `start_time`), or None when there is none."""
    subject = f"{API}.STREAM.MSG.GET.{stream}"
    answer = await ask(nc, subject, query, _MessageAnswer)
    if answer.error:
        if answer.error.err_code == NO_MESSAGE:
            return None
        raise _refuse(subject, answer.error)
    return answer.message


def parse_headers(raw: bytes) -> dict[str, str]:
    """`NATS/1.0\\r\\nName: value\\r\\n…` as a dict (the last value of a repeated name)."""
    found: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            found[name.strip()] = value.strip()
    return found


def kv_stream(bucket: str) -> str:
    """The stream that holds a KV bucket."""
    return f"KV_{bucket}"


def kv_subject(bucket: str, key: str) -> str:
    """The subject a KV bucket stores `key` on (`>`: every key)."""
    return f"$KV.{bucket}.{key}"
