"""`stellaclaw status` for a terminal: tables that fit 100 columns (`--json` has everything)."""

import textwrap
from collections import defaultdict
from collections.abc import Iterable

from services.launcher.status_report import Durable, Instance, Lease, Report, Stream, duration

WIDTH = 100
INDENT = "  "
BUCKET_STREAMS = ("KV_", "OBJ_")  # listed after the app streams


def render(report: Report) -> str:
    """The whole report as text, every line at most WIDTH columns."""
    at = report.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        [f"Stellaclaw on {report.bus} at {at}"],
        services(report.expected, report.instances),
        [
            f"Turns running {report.turns_running} · dead letters {report.dead_letters} · bad "
            f"messages {report.bad_messages} (SC_EVENTS keeps a day)"
        ],
        streams(report.streams),
        durables(report.durables, report.ephemeral_consumers),
        leases(report.leases),
        problems(report.problems),
    ]
    return "\n\n".join("\n".join(fit(line) for line in part) for part in parts if part) + "\n"


def fit(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def services(expected: list[str], instances: list[Instance]) -> list[str]:
    live = {instance.service for instance in instances}
    header = f"{'SERVICE':<17}{'HOST':<15}{'PID':>8}  {'UP':<8} {'VERSION':<8} INSTANCE"
    lines = [f"Services ({len(instances)} live instances)", INDENT + header]
    for instance in instances:
        pid = str(instance.pid) if instance.pid is not None else "-"
        lines.append(
            f"{INDENT}{clip(instance.service, 16):<17}{clip(instance.host or '-', 14):<15}"
            f"{pid:>8}  {duration(instance.uptime_s):<8} {clip(instance.version, 8):<8} "
            f"{instance.instance_id}"
        )
        lines += counters(instance)
    lines += [f"{INDENT}{name:<17}NO LIVE INSTANCE" for name in expected if name not in live]
    return lines


def counters(instance: Instance) -> list[str]:
    shown = [
        f"{name} {size(value) if name.endswith('_bytes') else f'{value:,}'}"
        for name, value in sorted(instance.counters.items())
    ]
    shown += [f"{name} {value}" for name, value in sorted(instance.metadata.items())]
    if not shown:
        return []
    indent = INDENT * 3
    return textwrap.wrap(", ".join(shown), WIDTH, initial_indent=indent, subsequent_indent=indent)


def size(count: int) -> str:
    amount = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def streams(found: list[Stream]) -> list[str]:
    header = f"{'STREAM':<20}{'MESSAGES':>12}{'SIZE':>12}{'CONSUMERS':>11}  SEQUENCES"
    lines = ["Streams", INDENT + header]
    for stream in sorted(found, key=lambda s: (s.name.startswith(BUCKET_STREAMS), s.name)):
        sequences = f"{stream.first_seq}..{stream.last_seq}" if stream.messages else "-"
        lines.append(
            f"{INDENT}{clip(stream.name, 19):<20}{stream.messages:>12,}{size(stream.bytes):>12}"
            f"{stream.consumers:>11}  {sequences}"
        )
    return lines


def durables(found: list[Durable], ephemeral: int) -> list[str]:
    header = (
        f"{'STREAM/DURABLE':<30}{'PENDING':>9}{'ACK PEND':>10}{'REDELIV':>9}{'PULLS':>7}"
        f"  {'IDLE':<8} STATE"
    )
    lines = ["Durable consumers", INDENT + header]
    for durable in found:
        name = clip(f"{durable.stream}/{durable.durable}", 29)
        lines.append(
            f"{INDENT}{name:<30}{durable.pending:>9,}{durable.ack_pending:>10,}"
            f"{durable.redelivered:>9,}{durable.waiting:>7}  {duration(durable.idle_s):<8} "
            f"{state(durable)}"
        )
    lines.append(
        f"{INDENT}and {ephemeral} consumers of live readers (chat clients, actors, watchers)"
    )
    return lines


def state(durable: Durable) -> str:
    if durable.is_stuck:
        return f"STUCK, waits {duration(durable.waited_s)}"
    if durable.pending:
        return f"behind, waits {duration(durable.waited_s)}"
    return "busy" if durable.ack_pending else "ok"


def leases(found: list[Lease]) -> list[str]:
    by_holder: dict[tuple[str, int], list[str]] = defaultdict(list)
    for lease in found:
        by_holder[(lease.owner_id, lease.pid)].append(lease.key)
    lines = [f"Leases ({len(found)} held)"]
    if found:
        lines.append(f"{INDENT}{'HOLDER':<40}{'PID':>8}{'HELD':>6}  KEYS")
    for (owner_id, pid), keys in sorted(by_holder.items()):
        lines.append(f"{INDENT}{clip(owner_id, 39):<40}{pid:>8}{len(keys):>6}  {listing(keys, 42)}")
    return lines


def listing(keys: Iterable[str], width: int) -> str:
    """Keys joined, as many as fit `width`, then how many more."""
    keys = list(keys)
    shown: list[str] = []
    for index, key in enumerate(keys):
        rest = len(keys) - index - 1
        more = f" +{rest}" if rest else ""
        if len(", ".join([*shown, key]) + more) > width:
            return ", ".join(shown) + f" +{len(keys) - index}" if shown else clip(key, width)
        shown.append(key)
    return ", ".join(shown)


def problems(found: list[str]) -> list[str]:
    if not found:
        return ["No problems."]
    lines = [f"Problems ({len(found)})"]
    for problem in found:
        lines += textwrap.wrap(
            problem, WIDTH, initial_indent=INDENT + "! ", subsequent_indent=INDENT * 2
        )
    return lines
