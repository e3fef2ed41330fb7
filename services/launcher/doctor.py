"""`stellaclaw doctor`: is everything Stellaclaw needs there and answering? One line per check.

The config (every `${VAR}` resolved, as the operator runs it); the bus (reachable, logged in as the
read-only `observer`, JetStream on); the streams, buckets and durables as `stellaclaw up` lays them
out; every service answering `$SRV.PING`; bubblewrap on each tools pool's host (asked through the
pool's probe); each model endpoint (a cheap authorized request); each remote (SSH with its pinned
key); the Telegram token (`getMe`). A failing line says what to do. Exit 0 when nothing failed
(warnings allowed), 1 when something did, 2 when the config cannot be read (as everywhere).
"""

import argparse
from pathlib import Path

HELP = "check the config, bus, services, sandbox, models, remotes and Telegram token"


def configure(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    parser.add_argument("--config", type=Path, default=Path("stellaclaw.toml"))
    parser.add_argument("--workdir", type=Path, default=None)
    return {}


def run(args: argparse.Namespace) -> int:
    """Print each finding, secrets masked; a ConfigError reaches the CLI (exit 2)."""
    import warnings

    import uvloop  # the CLI imports every command module: the checks load only when run

    with warnings.catch_warnings():  # asyncssh names cryptography's deprecated DSA at import
        warnings.filterwarnings("ignore", "DSA is deprecated", module=r"asyncssh\.crypto\.")
        from services.launcher import doctor_checks
    from shared import config as config_file
    from shared import lifecycle, redaction

    config = config_file.load(args.config)
    workdir = lifecycle.workdir_of(config, args.workdir)
    found = uvloop.run(doctor_checks.examine(config, args.config, workdir))
    secrets = config_file.secret_values(config)
    for finding in found:
        print(redaction.scrub(finding.line(), secrets))  # noqa: T201 -- the command's output
    failures = sum(finding.status == "failed" for finding in found)
    summary = f"{failures} of {len(found)} checks failed" if failures else "all checks passed"
    print(summary)  # noqa: T201 -- the command's output
    return 1 if failures else 0
