"""`stellaclaw deploy nats-users`: the bus users of an external nats-server, made from the code.

One user per role (the five services, `chat`, `observer` and `admin`) with the allow lists that
`stellaclaw up` gives its embedded server (`shared.permissions`, DESIGN §11), so a deployment's
users never drift from the subjects the code uses. Run it again after an upgrade; every run makes
new secrets, so replace them all at once.

- `--format nkeys` (the default): an NKey user per role. The server config holds only public
  keys; each role's seed is a file `<role>.nk`, named by that role's `creds_file` (nats-py logs in
  with it as `nkeys_seed`).
- `--format passwords`: a generated password per role, which the server config holds in plain
  text (nats-server also takes bcrypt hashes; making them would need a bcrypt library here), so
  that file must stay private. Each role reads its password from `STELLACLAW_NATS_PASSWORD`.

The server part is an `authorization` block for `include nats-users.conf`; the Stellaclaw part
is `[bus.services.<role>]` tables. The services' and `admin`'s tables read their secret where
systemd puts it (`LoadCredential=nats-creds:…`, or an `EnvironmentFile=`); `chat` and `observer`,
used from a shell, name their seed file directly. Without `--out` everything is printed; with
`--out DIR` it is written there (files 0600, the folder 0700) and the file names printed.
"""

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Literal

import msgspec

from services.launcher import bus_auth
from shared import config as config_file
from shared import lifecycle, permissions
from shared.config import BusConfig
from shared.errors import ConfigError

HELP = "make the bus users for an external nats-server (allow lists from the code)"
USERS_HELP = (
    "print (or write to --out DIR) a NATS user per role with its allow lists and its NKey seed "
    "or password, and the [bus.services.<role>] tables that log in with them"
)
Format = Literal["nkeys", "passwords"]
SERVER_FILE = "nats-users.conf"
CONFIG_FILE = "stellaclaw-bus.toml"
CREDENTIAL = "nats-creds"  # the systemd credential each unit loads its role's seed as
PASSWORD_VARIABLE = "STELLACLAW_NATS_PASSWORD"  # each unit's EnvironmentFile sets its role's
SHELL_ROLES = ("chat", "observer")  # logged in from a person's shell, not from a unit


class Login(msgspec.Struct, frozen=True, kw_only=True):
    """One role's user on the server and the secret the role logs in with."""

    role: str
    user: dict[str, object]  # the server's user entry, with its permissions
    secret: str  # an NKey seed (SU…) or a password
    secret_file: str  # `<role>.nk` or `<role>.env`
    secret_text: str  # that file's content


def configure(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    commands = parser.add_subparsers(dest="deploy_command", required=True)
    users = commands.add_parser("nats-users", help=USERS_HELP, description=USERS_HELP)
    users.add_argument("--config", type=Path, default=Path("stellaclaw.toml"))
    users.add_argument("--format", choices=("nkeys", "passwords"), default="nkeys")
    users.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="write the files to this folder"
    )
    return {"deploy nats-users": users}


def run(args: argparse.Namespace) -> int:
    try:
        bus = bus_of(args.config)
        logins = make(bus, args.format)
        if args.out is None:
            _say(printed(logins, args.format))
        else:
            written = write(args.out.resolve(), logins, args.format)
            _say("\n".join(["Wrote (each 0600):", *(f"  {path}" for path in written)]) + "\n")
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201 -- the one line the operator reads
        return lifecycle.EXIT_CONFIG
    return 0


def bus_of(path: Path) -> BusConfig:
    """The file's `[bus]` as written: the users depend only on its partitions, so no `${VAR}` is
    resolved and no secret is needed."""
    table = config_file.read_raw(path).get("bus", {})
    try:
        return msgspec.convert(table, BusConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"config: bus: {exc}") from None


def make(bus: BusConfig, form: Format) -> list[Login]:
    """A fresh login for every role, with its allow lists."""
    logins = []
    for role, allowed in permissions.roles(bus).items():
        rules = bus_auth.rules(allowed)
        logins.append(_nkey(role, rules) if form == "nkeys" else _password(role, rules))
    return logins


def _nkey(role: str, rules: dict[str, object]) -> Login:
    import nkeys  # only this command needs it, and the CLI imports every command's module

    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode()
    public = nkeys.from_seed(bytearray(seed.encode())).public_key.decode()
    user: dict[str, object] = {"nkey": public, "permissions": rules}
    return Login(role=role, user=user, secret=seed, secret_file=f"{role}.nk", secret_text=seed)


def _password(role: str, rules: dict[str, object]) -> Login:
    password = secrets.token_urlsafe(24)
    user: dict[str, object] = {"user": role, "password": password, "permissions": rules}
    text = f"{PASSWORD_VARIABLE}={password}"
    return Login(role=role, user=user, secret=password, secret_file=f"{role}.env", secret_text=text)


def server_conf(logins: list[Login]) -> str:
    """The `authorization` block, as JSON (which the server's config format accepts), so no `$`
    in a subject is read as a variable."""
    users = msgspec.json.format(msgspec.json.encode({"users": [x.user for x in logins]}))
    heading = "# Stellaclaw's bus users (stellaclaw deploy nats-users)"
    return f"{heading}\nauthorization: {users.decode()}\n"


def config_tables(logins: list[Login], form: Format, folder: Path | None) -> str:
    """The `[bus.services.<role>]` tables for `stellaclaw.toml`."""
    lines = [
        "# Stellaclaw's bus logins (stellaclaw deploy nats-users): add them to stellaclaw.toml"
    ]
    for login in logins:
        lines += ["", f"[bus.services.{login.role}]"]
        if form == "passwords":
            lines += [f'user = "{login.role}"', f'password = "${{{PASSWORD_VARIABLE}}}"']
        elif login.role in SHELL_ROLES:
            where = folder / login.secret_file if folder else Path(login.secret_file)
            lines.append(f'creds_file = "{where}"')
        else:
            lines.append(f'creds_file = "${{CREDENTIALS_DIRECTORY}}/{CREDENTIAL}"')
    return "\n".join(lines) + "\n"


def printed(logins: list[Login], form: Format) -> str:
    """Everything, for a terminal: the server block, the tables and each role's secret file."""
    parts = [server_conf(logins), config_tables(logins, form, None)]
    parts.append("# One file per role (0600); --out DIR writes them all")
    parts += [f"# {login.secret_file}\n{login.secret_text}" for login in logins]
    return "\n".join(parts) + "\n"


def write(folder: Path, logins: list[Login], form: Format) -> list[Path]:
    """Write every file into `folder` (made 0700); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    files = {SERVER_FILE: server_conf(logins), CONFIG_FILE: config_tables(logins, form, folder)}
    files |= {login.secret_file: login.secret_text + "\n" for login in logins}
    written = []
    for name, text in files.items():
        _write_private(folder / name, text)
        written.append(folder / name)
    return written


def _write_private(path: Path, text: str) -> None:
    """Create or replace a file only its owner can read, without a moment of wider access."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


def _say(text: str) -> None:
    print(text, end="")  # noqa: T201 -- the command's output
