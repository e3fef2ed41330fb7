"""`stellaclaw deploy nats-users` against the real nats-server with `deploy/nats/single.conf`:
each role logs in with the credential it generated, through the `[bus.services.<role>]` tables it
printed (as systemd hands them over), and is held to its own allow list."""

import asyncio
import os
import re
import tomllib
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from services.launcher import cli, deploy_users
from services.launcher.embedded_nats import EmbeddedNats, Setup
from shared import config as config_file
from shared import layout, lifecycle, subjects
from shared.bus import BusAccess
from shared.config import BusConfig
from shared.connection import Credential, connected
from shared.errors import ConfigError
from tests.kit.stack import stellaclaw
from tests.kit.waiting import eventually

SINGLE = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "single.conf"
MODELS = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "x"}}}
STORE_LINE = re.compile(r"^\s*store_dir: .*$", re.M)


def generate(tmp_path: Path, form: str) -> Path:
    """Run the command as an operator would; the folder it wrote."""
    config = tmp_path / "stellaclaw.toml"
    config.write_text('default_model = "m"\n[models.m]\nprovider = "openai_chat"\nmodel = "x"\n')
    out = tmp_path / "nats-users"
    argv = ["deploy", "nats-users", "--config", str(config), "--format", form, "--out", str(out)]
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 0
    return out


@asynccontextmanager
async def deployed_server(tmp_path: Path, users: Path) -> AsyncIterator[str]:
    """`deploy/nats/single.conf` with the generated users beside it, on a free loopback port
    with its store in the test's folder (the flags give both); its URL."""
    folder = tmp_path / "nats"
    folder.mkdir()
    text, found = STORE_LINE.subn("", SINGLE.read_text(encoding="utf-8"))
    assert found == 1
    (folder / "nats.conf").write_text(text)
    (folder / deploy_users.SERVER_FILE).write_bytes((users / deploy_users.SERVER_FILE).read_bytes())
    server = EmbeddedNats(Setup(store_dir=folder / "store", conf_path=folder / "nats.conf"))
    try:
        yield await server.start()
    finally:
        await server.stop()


def role_access(url: str, users: Path, role: str, env: dict[str, str]) -> BusAccess:
    """The role's login as a service builds it: the config with the generated tables, only the
    role's own `${VAR}`s resolved."""
    tables = tomllib.loads((users / deploy_users.CONFIG_FILE).read_text(encoding="utf-8"))
    raw = MODELS | {"bus": {"url": url, "in_partitions": 16} | tables["bus"]}
    config = config_file.parse(raw, env, role)
    return lifecycle.bus_access(config.bus, users, role, [])


def systemd_credential(tmp_path: Path, users: Path, role: str) -> dict[str, str]:
    """What `LoadCredential=nats-creds:<role>.nk` gives the unit: its own folder, its variable."""
    folder = tmp_path / "credentials" / role
    folder.mkdir(parents=True)
    (folder / deploy_users.CREDENTIAL).write_bytes((users / f"{role}.nk").read_bytes())
    return {"CREDENTIALS_DIRECTORY": str(folder)}


def environment_file(users: Path, role: str) -> dict[str, str]:
    """What `EnvironmentFile=<role>.env` gives the unit."""
    name, value = (users / f"{role}.env").read_text(encoding="utf-8").strip().split("=", 1)
    return {name: value}


async def migrate(tmp_path: Path, url: str, users: Path) -> str:
    """`stellaclaw migrate` as the migrate unit runs it: the config with the generated tables,
    the admin's seed handed over as a systemd credential; what it printed."""
    tables = (users / deploy_users.CONFIG_FILE).read_text(encoding="utf-8")
    config = tmp_path / "deployed.toml"
    config.write_text(
        f'default_model = "m"\n[models.m]\nprovider = "openai_chat"\nmodel = "x"\n'
        f'[bus]\nurl = "{url}"\n{tables}'
    )
    env = systemd_credential(tmp_path, users, "admin") | {"PATH": os.defpath}
    argv = ["migrate", "--config", str(config), "--workdir", str(tmp_path / "workdir")]
    process = await asyncio.create_subprocess_exec(
        stellaclaw(), *argv, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def held_to_its_role(access: BusAccess) -> None:
    """The session stores history (allowed) and cannot publish an inbound message (ingress's
    right): the server refuses it and the service counts it."""
    async with connected(access, "session") as conn:
        ack = await conn.js.publish(subjects.history("s1"), b"{}")
        assert ack.stream == subjects.HISTORY_STREAM
        await conn.nc.publish(subjects.inbound("telegram", "tg_1"), b"{}")
        await conn.nc.flush()
        await eventually(lambda: conn.counters["permission_violations"] == 1)


async def test_nkey_users_log_in_with_their_seeds_and_are_held_to_their_allow_lists(tmp_path):
    users = generate(tmp_path, "nkeys")
    assert users.stat().st_mode & 0o777 == 0o700
    assert {path.stat().st_mode & 0o777 for path in users.iterdir()} == {0o600}
    server_conf = (users / deploy_users.SERVER_FILE).read_text(encoding="utf-8")
    seeds = [path.read_text(encoding="utf-8").strip() for path in users.glob("*.nk")]
    assert len(seeds) == 8
    assert not [seed for seed in seeds if seed in server_conf]  # the server holds public keys
    async with deployed_server(tmp_path, users) as url:
        assert "the bus layout is current" in await migrate(tmp_path, url, users)
        session = role_access(url, users, "session", systemd_credential(tmp_path, users, "session"))
        await held_to_its_role(session)
        # observer, used from a shell, names its seed file directly
        async with connected(
            role_access(url, users, "observer", {}), "status", role="observer"
        ) as conn:
            assert (await conn.js.account_info()).streams > 0


async def test_password_users_log_in_from_their_environment_files(tmp_path):
    users = generate(tmp_path, "passwords")
    async with deployed_server(tmp_path, users) as url:
        admin = role_access(url, users, "admin", environment_file(users, "admin"))
        async with connected(admin, "launcher", role="admin") as conn:
            await layout.ensure(conn.js, BusConfig())
        await held_to_its_role(
            role_access(url, users, "session", environment_file(users, "session"))
        )


async def test_a_seed_the_server_does_not_know_is_refused_in_one_line(tmp_path):
    users = generate(tmp_path, "nkeys")
    async with deployed_server(tmp_path, users) as url:
        (tmp_path / "other").mkdir()
        stranger = generate(tmp_path / "other", "nkeys") / "session.nk"
        access = BusAccess(url=url, logins={"session": Credential(creds_file=str(stranger))})
        with pytest.raises(ConfigError, match=f"refused the login as the creds file {stranger}"):
            async with connected(access, "session", connect_s=2):
                pass
