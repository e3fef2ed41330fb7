"""`stellaclaw status`: the live services, stream and consumer lag, leases and dead letters.

Logged in as the read-only `observer` role, so it runs from any machine that reaches the bus
(`status_survey` says where each part comes from; `status_report` when a consumer is stuck).
Exit 0: all is well; 1: a service has no live instance or a consumer is stuck; 2: the config or
the bus login is wrong (one line on stderr).
"""

import argparse
from pathlib import Path

HELP = "the live services, stream and consumer lag, leases, running turns and dead letters"
STUCK_AFTER_S = 60.0


def configure(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    parser.add_argument("--config", type=Path, default=Path("stellaclaw.toml"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    parser.add_argument(
        "--stuck-after",
        type=float,
        default=STUCK_AFTER_S,
        metavar="S",
        help="a consumer with work waiting and no progress for S seconds is stuck (default 60)",
    )
    return {}


def run(args: argparse.Namespace) -> int:
    # The CLI imports every command module to build its parser: the rest loads only here.
    import msgspec
    import uvloop

    from services.launcher import observer_login, status_survey, status_view

    bus = observer_login.access(args.config, args.workdir)
    probe = status_survey.Probe(
        expected=observer_login.expected_services(args.config), stuck_after_s=args.stuck_after
    )
    found = uvloop.run(
        observer_login.observe(bus, "status", lambda conn: status_survey.survey(conn.nc, probe))
    )
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(found)).decode())  # noqa: T201 -- output
    else:
        print(status_view.render(found), end="")  # noqa: T201 -- the command's output
    return 1 if found.problems else 0
