"""`stellaclaw bus tail` and `stellaclaw bus replay`: the live and the stored flow, one line each.

Both log in as the read-only `observer` role, so they run from any machine that reaches the bus.
`tail` is a core subscription on app subjects (default every one); `replay` walks a stream with
`$JS.API.STREAM.MSG.GET` (`next_by_subj`), one stored message at a time, from the first or from
the first stored at `--since`: no consumer is made, so reading needs no right to make one.
`replay SC_HIST --session S` prints that session's history as a transcript (`bus_transcript`).
Content (texts, tool arguments and outputs) shows only with `--content`.
"""

import argparse
from pathlib import Path

from shared import subjects

HELP = "read the bus: `tail` the live flow or `replay` a stream, one readable line per message"
TAIL_HELP = "print live messages on SUBJECT (default every app subject) as they pass"
REPLAY_HELP = (
    f"print a stream's stored messages, oldest first ({subjects.HISTORY_STREAM} --session: "
    "a session's transcript)"
)


def configure(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    commands = parser.add_subparsers(dest="bus_command", required=True)
    tail = commands.add_parser("tail", help=TAIL_HELP, description=TAIL_HELP)
    tail.add_argument("subject", nargs="?", default=subjects.APP_ALL)
    tail.add_argument("--count", type=int, default=0, metavar="N", help="stop after N lines")
    replay = commands.add_parser("replay", help=REPLAY_HELP, description=REPLAY_HELP)
    replay.add_argument("stream")
    replay.add_argument("--subject", default=">", help="only messages on this subject filter")
    replay.add_argument("--since", default=None, metavar="T", help="ISO time, or 90s/15m/2h/3d ago")
    replay.add_argument(
        "--session", default=None, help=f"{subjects.HISTORY_STREAM}: one session, as a transcript"
    )
    for command in (tail, replay):
        command.add_argument("--conv", default="", help="only this conversation's messages")
        command.add_argument(
            "--kind", action="append", default=[], help="only these kinds (repeat or a,b)"
        )
        command.add_argument("--content", action="store_true", help="show texts and tool I/O")
        command.add_argument("--config", type=Path, default=Path("stellaclaw.toml"))
        command.add_argument("--workdir", type=Path, default=None)
    return {"bus tail": tail, "bus replay": replay}


def run(args: argparse.Namespace) -> int:
    # The CLI imports every command module to build its parser: the rest loads only here.
    from services.launcher import bus_reading

    return bus_reading.main(args)
