"""The embedded bus's users: a fresh password per role at every `stellaclaw up` (DESIGN §11).

The server reads them from `run/nats.conf` (0600) with each role's allow lists
(`shared.permissions`); each role's password is also in `run/auth/<role>` (0600, in a 0700
folder) for the processes that log in as it: the services `up` starts, `stellaclaw run <service>`
and `stellaclaw chat` on the same workdir. The file is JSON, which the server's config format
accepts, so no `$` in a subject is ever read as a variable.
"""

import os
import secrets
from pathlib import Path

import msgspec

from shared import lifecycle, permissions
from shared.bus import BusAccess, Credential
from shared.config import BusConfig


def generate() -> dict[str, str]:
    """A new password for every role."""
    return {role: secrets.token_urlsafe(24) for role in permissions.ROLES}


def conf_path(workdir: Path) -> Path:
    return workdir / "run" / "nats.conf"


def write(workdir: Path, bus: BusConfig, passwords: dict[str, str]) -> Path:
    """Write `run/nats.conf` and `run/auth/<role>`; returns the conf's path."""
    folder = lifecycle.auth_dir(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for role, password in passwords.items():
        _write_private(folder / role, password + "\n")
    path = conf_path(workdir)
    _write_private(path, render(bus, passwords))
    return path


def render(bus: BusConfig, passwords: dict[str, str]) -> str:
    """The server's `authorization` block: one user per role with its allow lists."""
    users = [
        {"user": role, "password": passwords[role], "permissions": rules(allowed)}
        for role, allowed in permissions.roles(bus).items()
    ]
    return msgspec.json.format(msgspec.json.encode({"authorization": {"users": users}})).decode()


def rules(allowed: permissions.Permissions) -> dict[str, object]:
    """A role's allow lists as the server's config writes them."""
    found: dict[str, object] = {
        "publish": {"allow": list(allowed.publish)},
        "subscribe": {"allow": list(allowed.subscribe)},
    }
    if allowed.allow_responses:
        found["allow_responses"] = True
    return found


def access(url: str, passwords: dict[str, str]) -> BusAccess:
    """Logins for every role (the launcher and the test kit hold them all)."""
    logins = {role: Credential(user=role, password=p) for role, p in passwords.items()}
    return BusAccess(url=url, logins=logins)


def _write_private(path: Path, text: str) -> None:
    """Create or replace a file only its owner can read, without a moment of wider access."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)
