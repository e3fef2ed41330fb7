"""`deploy/` checked against the code: a systemd unit per service that runs it hardened, a compose
file with every service and a 3-node cluster, NATS configs the real nats-server accepts, and a
deployment config the loader accepts whose logins are the ones `stellaclaw deploy nats-users`
makes."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from services.launcher import deploy_users, supervisor
from services.launcher.embedded_nats import binary
from shared import config as config_file
from shared import connection, lifecycle, variables
from shared.config import BusConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = DEPLOY / "systemd"
NODES = [DEPLOY / "nats" / "cluster" / f"node-{n}.conf" for n in (1, 2, 3)]


def unit(name: str) -> dict[str, list[str]]:
    """A unit file's settings (a key may repeat, as systemd allows), comments left out."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("service", supervisor.SERVICES)
def test_every_service_has_a_hardened_unit_that_runs_it(service):
    settings = unit(f"stellaclaw-{service}.service")
    [command] = settings["ExecStart"]
    assert re.search(rf"/stellaclaw run {service}( |$)", command)
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["Restart"] == ["always"]
    assert settings["RestartPreventExitStatus"] == [str(lifecycle.EXIT_CONFIG)]
    assert settings["User"] == ["stellaclaw"]
    assert settings["EnvironmentFile"] == [f"-/etc/stellaclaw/{service}.env"]
    # its own NATS login, under the name the generated [bus.services.<role>] table reads
    assert settings["LoadCredential"] == [
        f"{deploy_users.CREDENTIAL}:/etc/stellaclaw/nats/{service}.nk"
    ]


def test_extra_tools_runners_run_tools_in_their_own_slot():
    settings = unit("stellaclaw-tools@.service")
    [command] = settings["ExecStart"]
    assert re.search(r"/stellaclaw run tools .*--owner-id %H/tools/%i \$STELLACLAW_POOLS$", command)
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["Restart"] == ["always"]


def test_the_layout_unit_migrates_as_admin_before_the_services():
    settings = unit("stellaclaw-migrate.service")
    assert "/stellaclaw migrate " in settings["ExecStart"][0]
    assert settings["LoadCredential"] == [
        f"{deploy_users.CREDENTIAL}:/etc/stellaclaw/nats/admin.nk"
    ]
    # `migrate` resolves every ${VAR}: it reads every service's environment file
    assert settings["EnvironmentFile"] == [
        f"-/etc/stellaclaw/{service}.env" for service in supervisor.STOP_ORDER
    ]
    for service in supervisor.SERVICES:
        after = unit(f"stellaclaw-{service}.service")["After"][0].split()
        assert "stellaclaw-migrate.service" in after


def compose_services(text: str) -> dict[str, str]:
    """The entries of a compose file's top-level `services:` and each one's lines, read by
    indentation (no YAML parser is a dependency)."""
    found: dict[str, str] = {}
    name = ""
    inside = False
    for line in text.splitlines():
        if re.match(r"^[^\s#]", line):  # a top-level key
            inside = line == "services:"
            name = ""
        elif inside and (match := re.match(r"^  ([a-z0-9_-]+):", line)):
            name = match[1]
            found[name] = ""
        elif name:
            found[name] += line + "\n"
    return found


def test_compose_runs_every_service_two_tools_runners_and_three_nats_nodes():
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    assert "\t" not in text
    services = compose_services(text)
    assert set(services) == {*supervisor.SERVICES, "nats-1", "nats-2", "nats-3", "migrate", "chat"}
    for service in supervisor.SERVICES:
        assert f'command: ["run", "{service}", ' in services[service], service
        assert f"{{source: {service}, target: {deploy_users.CREDENTIAL}}}" in services[service]
    assert "replicas: 2" in services["tools"]
    for n in (1, 2, 3):
        assert f"./nats/cluster/node-{n}.conf:/etc/nats/nats.conf:ro" in services[f"nats-{n}"]
    assert 'command: ["migrate", ' in services["migrate"]
    for path in re.findall(r"\./([\w./-]+\.conf)", text):
        if not path.startswith("nats-users/"):  # made by `stellaclaw deploy nats-users`
            assert (DEPLOY / path).is_file(), path
    assert (DEPLOY / "Dockerfile").is_file()


@pytest.mark.parametrize("conf", [DEPLOY / "nats" / "single.conf", *NODES], ids=lambda p: p.name)
def test_the_real_nats_server_accepts_each_config_with_the_generated_users(conf, tmp_path):
    logins = deploy_users.make(BusConfig(), "nkeys")
    (tmp_path / deploy_users.SERVER_FILE).write_text(deploy_users.server_conf(logins))
    shutil.copy(conf, tmp_path / conf.name)
    checked = subprocess.run(
        [str(binary()), "-t", "-c", str(tmp_path / conf.name)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "is valid" in checked.stdout + checked.stderr


def test_the_cluster_nodes_are_three_distinct_members_of_one_cluster():
    texts = [node.read_text(encoding="utf-8") for node in NODES]
    names = [name for text in texts for name in re.findall(r"^server_name: (\S+)$", text, re.M)]
    assert names == ["nats-1", "nats-2", "nats-3"]
    for text in texts:
        assert re.findall(r"nats-route://(nats-\d):6222", text) == names
        assert re.search(r"^\s+name: stellaclaw$", text, re.M)
        assert "include ./nats-users.conf" in text


def test_the_example_config_loads_for_every_service_with_three_replicas():
    raw = tomllib.loads((DEPLOY / "stellaclaw.toml.example").read_text(encoding="utf-8"))
    env = {name: "set" for role in supervisor.SERVICES for name in variables.referenced(raw, role)}
    for service in supervisor.SERVICES:
        config = config_file.parse(raw, env, service)
        assert config.bus.replicas == 3
        assert len(connection.servers(config.bus.url or "")) == 3
        assert config.bus.credentials(service).creds_file == f"set/{deploy_users.CREDENTIAL}"


def test_the_example_config_holds_the_logins_nats_users_generates():
    raw = tomllib.loads((DEPLOY / "stellaclaw.toml.example").read_text(encoding="utf-8"))
    logins = deploy_users.make(BusConfig(), "nkeys")
    made = deploy_users.config_tables(logins, "nkeys", Path("/etc/stellaclaw/nats"))
    assert raw["bus"]["services"] == tomllib.loads(made)["bus"]["services"]
