"""Who may do what on the bus: one NATS user per service and client role (DESIGN §11).

The allow lists are built from `shared.subjects` and `shared.layout`, so a new subject or durable
cannot drift from its permission; `NATS-AUTH.md` (shared docs) has the verified rules behind each
entry. Every role has its own reply inbox prefix and no role holds `_INBOX.>`. Only `admin` (the
launcher) creates or updates streams, buckets and durables; services only bind.
"""

from typing import Final

import msgspec

from shared import layout, subjects
from shared.config import BusConfig

API: Final = "$JS.API"
ROLES: Final = (
    "conversation",
    "session",
    "tools",
    "delivery",
    "ingress_telegram",
    "chat",
    "observer",
    "admin",
)


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    """One user's allow lists; `allow_responses` lets it answer requests without inbox rights."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False


def bind(stream: str, durable: str) -> list[str]:
    """Bind a durable the launcher made, fetch from it and settle what it delivers."""
    return [
        f"{API}.CONSUMER.INFO.{stream}.{durable}",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def key_value(bucket: str) -> list[str]:
    stream = f"KV_{bucket}"
    return [f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.MSG.GET.{stream}", f"$KV.{bucket}.>"]


def key_value_read(bucket: str) -> list[str]:
    """Read a bucket's keys, never write them."""
    stream = f"KV_{bucket}"
    return [f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.MSG.GET.{stream}"]


def key_value_watch(bucket: str) -> list[str]:
    """Watch a bucket (also what listing its keys does)."""
    stream = f"KV_{bucket}"
    return [
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.INFO.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]


def object_get(store: str) -> list[str]:
    stream = f"OBJ_{store}"
    return [
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.STREAM.NAMES",  # nats-py looks the stream up by subject
        *ordered(stream),
    ]


def object_put(store: str) -> list[str]:
    stream = f"OBJ_{store}"
    return [
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.STREAM.PURGE.{stream}",  # an overwrite purges the old chunks
        f"$O.{store}.>",
    ]


def ordered(stream: str) -> list[str]:
    """An ordered consumer: it may create any consumer of `stream`, so never on a shared one."""
    return [f"{API}.CONSUMER.CREATE.{stream}", f"$JS.FC.{stream}.>"]


def micro(service: str, *endpoints: str) -> list[str]:
    """What `nats.micro` subscribes to for discovery (`$SRV.PING/INFO/STATS`) and endpoints."""
    return ["$SRV.*", f"$SRV.*.{service}", f"$SRV.*.{service}.*", *endpoints]


def inbox(role: str) -> str:
    return subjects.inbox_prefix(role) + ".>"


def allow(*parts: str | list[str]) -> tuple[str, ...]:
    """An allow list from subjects and groups of subjects."""
    return tuple(entry for part in parts for entry in ([part] if isinstance(part, str) else part))


def roles(bus: BusConfig) -> dict[str, Permissions]:
    """Every role's allow lists for a bus laid out with `bus`'s partitions."""
    durables = layout.durables(bus)

    def binds(role: str) -> list[str]:
        return [entry for c in durables.get(role, []) for entry in bind(c.stream, c.durable)]

    def service(role: str, *extra: str) -> tuple[str, ...]:
        return allow(inbox(role), micro(role, subjects.counters(role), *extra))

    outputs = [subjects.outbound_channel("telegram"), subjects.outbound_channel("cli")]
    found = {
        "conversation": Permissions(
            publish=allow(subjects.SESSION_INPUTS_ALL, subjects.WAKES_ALL, outputs)
            + allow(subjects.SESSION_CONTROL_ALL, subjects.EVENTS_ALL, binds("conversation"))
            + allow(subjects.tool_probe("*"), subjects.TOOL_END_ALL)
            + allow(key_value(subjects.CONV_BUCKET), key_value(subjects.AUTH_BUCKET))
            + allow(key_value_watch(subjects.CONV_BUCKET), key_value_watch(subjects.AUTH_BUCKET))
            + allow(f"{API}.STREAM.INFO.{subjects.EVENTS_STREAM}")
            + allow(ordered(subjects.EVENTS_STREAM)),  # the 24 h usage (SPEC §7.5)
            subscribe=service("conversation"),
            allow_responses=True,
        ),
        "session": _session(binds("session"), outputs, service("session")),
        "tools": Permissions(
            publish=allow(subjects.TOOL_RESULTS_ALL, subjects.EVENTS_ALL)
            + allow(bind(subjects.TOOL_STREAM, "*"))  # every pool's queue: pools are per config
            + allow(subjects.TOOL_RUNNERS_ALL)  # a call forwarded to the runner holding its state
            + allow(object_put(subjects.FILES_STORE))  # loaded media, files to send, spills
            + allow(object_get(subjects.FILES_STORE)),  # attachments placed in `upload/`
            subscribe=service("tools", subjects.tool_catalog("*"), subjects.tool_probe("*"))
            + allow(subjects.tool_place("*"))
            + allow(subjects.TOOL_CANCEL_ALL, subjects.TOOL_RUNNERS_ALL, subjects.TOOL_END_ALL),
            allow_responses=True,
        ),
        "delivery": _delivery(binds("delivery"), service("delivery")),
        "ingress_telegram": Permissions(
            publish=allow(subjects.inbound_channel("telegram"), subjects.EVENTS_ALL)
            + allow(key_value(subjects.INGRESS_BUCKET), object_put(subjects.FILES_STORE))
            + allow(key_value_read(subjects.AUTH_BUCKET), key_value_watch(subjects.AUTH_BUCKET))
            + allow(key_value(subjects.LEASE_BUCKET)),  # `leader.ingress.<bot>`
            subscribe=service("ingress_telegram"),
            allow_responses=True,
        ),
        "chat": Permissions(
            publish=allow(subjects.inbound_channel("cli"), ordered(subjects.OUT_CLI_STREAM))
            + allow(object_get(subjects.FILES_STORE)),
            subscribe=allow(inbox("chat")),
        ),
        "observer": Permissions(
            publish=_observing(), subscribe=(subjects.APP_ALL, inbox("observer"))
        ),
        "admin": Permissions(publish=(">",), subscribe=(">",), allow_responses=True),
    }
    assert tuple(found) == ROLES
    return found


def _delivery(binds: list[str], serving: tuple[str, ...]) -> Permissions:
    """Delivery: its durable, sent-message records, panels, its leader lease, files to send."""
    return Permissions(
        publish=allow(subjects.EVENTS_ALL, binds)
        + allow(key_value(subjects.DELIVERY_BUCKET), object_get(subjects.FILES_STORE))
        + allow(key_value(subjects.LEASE_BUCKET), key_value(subjects.PANEL_BUCKET)),
        subscribe=serving,
        allow_responses=True,
    )


def _session(binds: list[str], outputs: list[str], serving: tuple[str, ...]) -> Permissions:
    """The session service: tool requests and cancels, history, outputs, leases and heads,
    wakes, its control lane, attachments."""
    return Permissions(
        publish=allow(subjects.TOOL_REQUESTS_ALL, subjects.HISTORY_ALL, outputs)
        + allow(subjects.EVENTS_ALL, subjects.tool_catalog("*"), subjects.tool_probe("*"), binds)
        + allow(subjects.tool_place("*"))  # attachments into `upload/` (DESIGN §4)
        + allow(ordered(subjects.TOOL_RESULT_STREAM))
        + allow(f"{API}.STREAM.MSG.GET.{subjects.TOOL_RESULT_STREAM}")
        + allow(f"{API}.STREAM.INFO.{subjects.HISTORY_STREAM}")
        + allow(f"{API}.STREAM.MSG.GET.{subjects.HISTORY_STREAM}")
        + allow(ordered(subjects.HISTORY_STREAM), object_put(subjects.FILES_STORE))
        + allow(object_get(subjects.FILES_STORE))  # attachments for the model (SPEC §8.2)
        + allow(key_value(subjects.LEASE_BUCKET), key_value(subjects.SESSION_BUCKET))
        + allow(key_value_watch(subjects.LEASE_BUCKET))
        + allow(subjects.WAKES_ALL, f"{API}.STREAM.MSG.GET.{subjects.SESSION_STREAM}")
        + allow(ordered(subjects.SESSION_STREAM))
        + allow(subjects.TOOL_CANCEL_ALL, subjects.TOOL_RUNNERS_ALL),
        subscribe=serving + allow(subjects.SESSION_CONTROL_ALL),
        allow_responses=True,
    )


def _observing() -> tuple[str, ...]:
    """Read-only questions: discovery, counters, stream and consumer state, stored messages."""
    return (
        *(f"$SRV.{verb}" for verb in ("PING", "INFO", "STATS")),
        *(f"$SRV.{verb}.>" for verb in ("PING", "INFO", "STATS")),
        subjects.counters("*"),
        subjects.tool_probe("*"),  # `stellaclaw doctor` asks each pool's host about bubblewrap
        f"{API}.INFO",
        f"{API}.STREAM.NAMES",
        f"{API}.STREAM.LIST",
        f"{API}.STREAM.INFO.*",
        f"{API}.CONSUMER.NAMES.*",
        f"{API}.CONSUMER.LIST.*",
        f"{API}.CONSUMER.INFO.*.*",
        # Stored messages, one at a time (`bus replay`, a consumer's oldest waiting message) and
        # lease values (`status`): reads that need no consumer, so never CONSUMER.CREATE.
        *(f"{API}.STREAM.MSG.GET.{stream}" for stream in _APP_STREAMS),
        f"{API}.STREAM.MSG.GET.KV_{subjects.LEASE_BUCKET}",
    )


_APP_STREAMS: Final = (
    subjects.IN_STREAM,
    subjects.SESSION_STREAM,
    subjects.WAKE_STREAM,
    subjects.TOOL_STREAM,
    subjects.TOOL_RESULT_STREAM,
    subjects.HISTORY_STREAM,
    subjects.OUT_STREAM,
    subjects.OUT_CLI_STREAM,
    subjects.EVENTS_STREAM,
)
