"""The pure parts of `stellaclaw status` and `bus tail/replay`: subject matching, lines for any
payload, `--since`, when a consumer is stuck, and the status view's 100 columns."""

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from services.launcher import bus_lines, status_view
from services.launcher.bus_lines import Seen
from services.launcher.bus_reading import since_time
from services.launcher.status_report import Durable, Instance, Lease, Report, duration, is_stuck
from shared import subjects
from shared.errors import ConfigError
from tests.unit.shared.samples import message_received

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def seen(subject: str, data: bytes) -> Seen:
    return Seen(subject=subject, time=NOW, data=data, headers={subjects.TRACE_HEADER: "t1"})


def test_subjects_match_as_nats_matches_them():
    assert bus_lines.matches(subjects.INBOUND_ALL, subjects.inbound("cli", "cli_a"))
    assert not bus_lines.matches(subjects.INBOUND_ALL, subjects.inbound("cli", "a") + ".b")
    assert bus_lines.matches(subjects.TOOL_REQUESTS_ALL, subjects.tool_request("local", "s"))
    assert bus_lines.matches(subjects.TOOL_REQUESTS_ALL, subjects.tool_requests("x")[:-2])
    assert not bus_lines.matches(subjects.TOOL_REQUESTS_ALL, subjects.tool_requests("x")[:-4])
    assert not bus_lines.matches(subjects.WAKES_ALL, subjects.wake("s") + ".more")


def test_every_payload_gets_a_line_and_content_only_when_asked():
    subject = subjects.inbound("cli", "cli_a")
    data = msgspec.json.encode(message_received("cli_a", "a secret"))
    hidden = bus_lines.describe(seen(subject, data), content=False)
    assert (hidden.kind, hidden.conv, hidden.trace) == ("message_received", "cli_a", "t1")
    assert hidden.summary == "from Ada: 8 chars"
    assert bus_lines.describe(seen(subject, data), content=True).summary == 'from Ada: "a secret"'
    assert bus_lines.describe(seen(subject, b""), content=False).summary == "(empty)"


def test_an_undecodable_or_unknown_payload_still_makes_a_line():
    broken = bus_lines.describe(seen(subjects.wake("s"), b'{"kind": "wake_session"}'), False)
    assert (broken.kind, broken.summary) == (
        "wake_session",
        "undecodable: Object missing required field `session_id`",
    )
    garbage = bus_lines.describe(seen(subjects.wake("s"), b"\xff not json"), False)
    assert garbage.kind == "?"
    assert garbage.summary.startswith("undecodable: ")
    elsewhere = bus_lines.describe(seen(subjects.APP_ALL[:-1] + "new.x", b'{"kind": "x"}'), False)
    assert (elsewhere.kind, elsewhere.summary) == ("x", "13 B")
    line = bus_lines.render(broken, content=False)
    assert line.endswith(
        " wake_session trace=t1 undecodable: Object missing required field `session_id`"
    )
    assert len(line) <= bus_lines.WIDTH


def test_since_is_an_age_or_an_iso_time():
    assert since_time("15m", NOW) == NOW - timedelta(minutes=15)
    assert since_time("1.5h", NOW) == NOW - timedelta(minutes=90)
    assert since_time("2026-04-30T08:00:00Z", NOW) == datetime(2026, 4, 30, 8, tzinfo=UTC)
    assert since_time("2026-04-30 08:00", NOW).tzinfo is not None  # local time
    with pytest.raises(ConfigError, match=r"--since 'yesterday': expected an ISO time"):
        since_time("yesterday", NOW)


def lagging(pending: int, waited_s: float | None, idle_s: float) -> Durable:
    return Durable(
        stream=subjects.TOOL_STREAM,
        durable=subjects.durable("tools", "local"),
        filter_subject=subjects.tool_requests("local"),
        pending=pending,
        ack_pending=1,
        redelivered=0,
        waiting=0,
        idle_s=idle_s,
        waited_s=waited_s,
    )


def test_a_consumer_is_stuck_only_when_work_waited_and_it_did_not_move_for_as_long():
    assert is_stuck(lagging(1, 61, 61), 60)
    assert not is_stuck(lagging(1, 61, 5), 60)  # it is moving, just behind
    assert not is_stuck(lagging(1, 2, 600), 60)  # the work has just arrived
    assert not is_stuck(lagging(0, None, 600), 60)  # only in flight: a long tool call


def test_the_status_view_fits_100_columns_whatever_the_names():
    long = "x" * 150
    report = Report(
        bus="nats://" + long,
        at=NOW,
        stuck_after_s=60,
        expected=["conversation", long],
        instances=[
            Instance(
                service="session",
                instance_id=long,
                version=long,
                host=long,
                pid=123,
                uptime_s=90061,
                counters={"handled": 10**12, "rss_bytes": 52_428_800, long: 1},
                metadata={"pools": long},
            )
        ],
        streams=[],
        durables=[msgspec.structs.replace(lagging(3, 700, 700), is_stuck=True, durable=long)],
        ephemeral_consumers=2,
        leases=[Lease(key=f"sess.{n}{long}", owner_id=long, pid=1, revision=n) for n in range(9)],
        turns_running=0,
        dead_letters=0,
        bad_messages=0,
        problems=[f"{long}: no live instance"],
    )
    text = status_view.render(report)
    assert max(len(line) for line in text.splitlines()) <= status_view.WIDTH
    assert "rss_bytes 50.0 MiB" in text
    assert "conversation     NO LIVE INSTANCE" in text
    assert "STUCK, waits 11m40s" in text
    assert (duration(None), duration(59), duration(3599), duration(90061)) == (
        "-",
        "59s",
        "59m59s",
        "1d01h",
    )
