"""`stellaclaw doctor`'s checks against a real nats-server (as the `observer` role), the services'
real `run()`s, the kit's model and Bot API servers and its SSH server."""

import re
import socket
from pathlib import Path
from typing import Any

import asyncssh
import msgspec
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js.api import StreamConfig

from services.conversation.service import run as run_conversation
from services.delivery.service import run as run_delivery
from services.launcher import doctor_bus, doctor_checks, doctor_http, doctor_remotes
from services.launcher.doctor_findings import Finding
from services.session.service import run as run_session
from services.tools.sandbox import host
from services.tools.service import run as run_tools
from shared import config as config_file
from shared import layout, lifecycle, subjects
from shared.bus import BusAccess
from shared.config import Config, SandboxConfig, TelegramConfig
from tests.kit.anthropic_api import anthropic_api
from tests.kit.llm_api import llm_api
from tests.kit.nats import TestBus
from tests.kit.services import make_runtime, running
from tests.kit.ssh import SshServer
from tests.kit.telegram_api import TelegramAPIServer
from tests.kit.waiting import eventually_async

KEY = "sk-doctor-test-key"
MODEL = "gpt-doctor"
FOUR = ("conversation", "session", "tools", "delivery")  # the services without [telegram]


def table(llm_url: str, **more: Any) -> dict[str, Any]:
    """A config as the services read it: one model at the kit's server, SC_IN in 4 partitions."""
    model = {"provider": "openai_chat", "base_url": llm_url, "api_key": KEY, "model": MODEL}
    return {"default_model": "main", "models": {"main": model}, "bus": {"in_partitions": 4}} | more


def record_bus(workdir: Path, access: BusAccess) -> None:
    """What a running `stellaclaw up` leaves for the other commands: the URL and the observer's
    password."""
    lifecycle.bus_url_file(workdir).parent.mkdir(parents=True, exist_ok=True)
    lifecycle.bus_url_file(workdir).write_text(access.url + "\n", encoding="utf-8")
    lifecycle.auth_dir(workdir).mkdir(parents=True)
    observer = access.logins["observer"].password or ""
    (lifecycle.auth_dir(workdir) / "observer").write_text(observer + "\n", encoding="utf-8")


async def answering(nc: Client, names: tuple[str, ...]) -> None:
    """Until an instance of each service answers `$SRV.PING.<name>`."""

    async def all_up() -> bool:
        for name in names:
            try:
                await nc.request(f"$SRV.PING.{name}", b"", timeout=0.5)
            except (NoRespondersError, TimeoutError):
                return False
        return True

    await eventually_async(all_up, timeout_s=20, what=f"{', '.join(names)} answering")


def lines(found: list[Finding]) -> dict[str, str]:
    """Each check's printed line, by check."""
    return {finding.check: finding.line() for finding in found}


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_healthy_stack_passes_every_check(
    bus: TestBus, nats_access, workdir, server: SshServer, remote_root
):
    async with llm_api(api_key=KEY) as llm:
        llm.models = ["gpt-other", MODEL]
        raw = table(llm.base_url, remotes={"box": server.remote(remote_root)})
        config = config_file.parse(raw, {})
        await layout.ensure(bus.js, config.bus, layout.pools(config))  # with the remote's pool
        record_bus(workdir, nats_access)
        runtime = make_runtime(raw, workdir, nats_access)
        runs = (run_conversation, run_session, run_tools, run_delivery)
        async with running(runtime, *runs):
            await answering(bus.nc, FOUR)
            found = await doctor_checks.examine(config, Path("stellaclaw.toml"), workdir)
    by_check = lines(found)
    assert [line for line in by_check.values() if not line.startswith("✓")] == []
    assert list(by_check)[:5] == ["config", "bus", "streams", "buckets", "durables"]
    assert by_check["config"] == "✓ config: stellaclaw.toml read, every variable set; " + (
        "1 model, 1 remote, no Telegram"
    )
    url = nats_access.url
    assert by_check["bus"] == f"✓ bus: {url} reachable, logged in as observer, JetStream on"
    assert by_check["streams"].startswith("✓ streams: all 9 as `stellaclaw up` makes them;")
    assert by_check["durables"].startswith("✓ durables: all 8 there")  # 4 partitions, 2 pools
    for name in FOUR:
        assert (
            by_check[f"service {name}"] == f"✓ service {name}: 1 instance answers (version 0.1.0)"
        )
    local = re.sub(r"runner \S+ on", "runner <id> on", by_check["pool local"])
    assert local == await expected_local_line(socket.gethostname())
    assert by_check["pool ssh_box"].endswith(f" reaches stellaclaw@127.0.0.1:{remote_root}")
    assert by_check["model main"] == (
        f"✓ model main: {llm.base_url} accepted the key and serves {MODEL!r}"
    )
    assert by_check["remote box"] == (
        f"✓ remote box: stellaclaw@127.0.0.1:{server.port} logged in with key_file; "
        "host key as pinned"
    )
    assert [listing["authorization"] for listing in llm.listings] == [f"Bearer {KEY}"]
    assert sorted(server.commands) == sorted(["true", f"test -d {remote_root}"])  # doctor, runner


async def expected_local_line(hostname: str) -> str:
    """The local pool's line as bubblewrap really behaves on this host."""
    error = await host.bubblewrap_error(SandboxConfig())
    if error is None:
        return (
            f"✓ pool local: runner <id> on {hostname}: bubblewrap works; "
            "auto → bubblewrap (network off)"
        )
    return (
        f"! pool local: runner <id> on {hostname}: auto runs commands unconfined (subprocess): "
        f"{error} — install bubblewrap on that host (or fix sandbox.bwrap_path), "
        'or set sandbox.mode = "subprocess" to accept it'
    )


async def test_a_service_that_does_not_answer_fails_its_line_with_what_to_do(
    bus: TestBus, nats_access, workdir
):
    async with llm_api(api_key=KEY) as llm:
        llm.models = [MODEL]
        raw = table(llm.base_url)
        config = config_file.parse(raw, {})
        record_bus(workdir, nats_access)
        async with running(make_runtime(raw, workdir, nats_access), run_tools):
            await answering(bus.nc, ("tools",))
            found = await doctor_checks.examine(config, Path("stellaclaw.toml"), workdir)
    by_check = lines(found)
    assert by_check["service tools"].startswith("✓ service tools: 1 instance answers")
    assert by_check["pool local"].startswith(("✓ pool local: runner r", "! pool local: runner r"))
    for name in ("conversation", "session", "delivery"):
        assert by_check[f"service {name}"] == (
            f"✗ service {name}: no instance answers $SRV.PING — start it (`stellaclaw up`, "
            f"or `stellaclaw run {name}`); see {workdir / 'logs' / f'{name}.log'}"
        )
    assert [f.check for f in found if f.status == "failed"] == [
        "service conversation",
        "service session",
        "service delivery",
    ]


async def test_no_runner_fails_the_pool_and_a_broken_bubblewrap_is_a_warning_or_a_failure(
    bus: TestBus, nats_access, workdir
):
    record_bus(workdir, nats_access)
    raw = table("http://127.0.0.1:9/v1")
    before = await doctor_bus.findings(config_file.parse(raw, {}), workdir)
    assert lines(before)["pool local"] == (
        "✗ pool local: no tools runner serves it — start tools (`stellaclaw up`, "
        "or `stellaclaw run tools --pool local` on its host)"
    )
    broken = raw | {"sandbox": {"bwrap_path": "/nonexistent/bwrap"}}
    async with running(make_runtime(broken, workdir, nats_access), run_tools):
        await answering(bus.nc, ("tools",))
        found = {}
        for mode in ("auto", "bubblewrap", "subprocess"):
            config = config_file.parse(raw | {"sandbox": {"mode": mode}}, {})
            found[mode] = lines(await doctor_bus.findings(config, workdir))["pool local"]
    why = "/nonexistent/bwrap is not installed (sandbox.bwrap_path)"
    fix = "install bubblewrap on that host (or fix sandbox.bwrap_path)"
    shown = {mode: re.sub(r"runner \S+ on \S+:", "runner:", line) for mode, line in found.items()}
    assert shown == {
        "auto": f"! pool local: runner: auto runs commands unconfined (subprocess): {why} — "
        f'{fix}, or set sandbox.mode = "subprocess" to accept it',
        "bubblewrap": f"✗ pool local: runner: bubblewrap cannot run: {why} — {fix}; commands fail",
        "subprocess": "✓ pool local: runner: sandbox.mode subprocess "
        f"(bubblewrap fails there: {why})",
    }


async def test_a_layout_unlike_the_configs_fails_each_stream_bucket_and_durable_it_concerns(
    bus: TestBus, nats_access, workdir
):
    """The bus was laid out with 4 partitions; the config now says 8, and some parts changed."""
    await bus.js.delete_stream(subjects.EVENTS_STREAM)
    await bus.js.delete_key_value(subjects.PANEL_BUCKET)
    await bus.js.delete_consumer(subjects.OUT_STREAM, subjects.durable("delivery", "telegram"))
    out: StreamConfig = (await bus.js.stream_info(subjects.OUT_STREAM)).config
    out.max_age = 2 * layout.DAY_S
    await bus.js.update_stream(out)
    record_bus(workdir, nats_access)
    raw = table("http://127.0.0.1:9/v1") | {"bus": {"in_partitions": 8}}
    found = lines(await doctor_bus.findings(config_file.parse(raw, {}), workdir))
    lay_out = "`stellaclaw up` (or `stellaclaw migrate`) lays out the bus; start it"
    now, wanted = subjects.inbound_transform(4), subjects.inbound_transform(8)
    assert found[f"stream {subjects.IN_STREAM}"] == (
        f"✗ stream {subjects.IN_STREAM}: subject transform is {now!r}, the config asks for "
        f"{wanted!r} — set bus.in_partitions back to 4: the partition count is fixed when the "
        "stream is made"
    )
    assert found[f"stream {subjects.EVENTS_STREAM}"] == (
        f"✗ stream {subjects.EVENTS_STREAM}: missing — {lay_out}"
    )
    assert found[f"stream {subjects.OUT_STREAM}"] == (
        f"✗ stream {subjects.OUT_STREAM}: max_age is 172800.0, expected 86400.0 — "
        "restart `stellaclaw up` to update it"
    )
    assert found[f"bucket {subjects.PANEL_BUCKET}"] == (
        f"✗ bucket {subjects.PANEL_BUCKET}: missing — {lay_out}"
    )
    telegram_durable = subjects.durable("delivery", "telegram")
    assert found[f"durable {telegram_durable}"] == (
        f"✗ durable {telegram_durable}: missing on {subjects.OUT_STREAM} — {lay_out}"
    )
    missing = [check for check, line in found.items() if line.startswith("✗ durable")]
    extra_partitions = [f"durable {subjects.durable('conversation', f'p{p}')}" for p in range(4, 8)]
    assert sorted(missing) == sorted([*extra_partitions, f"durable {telegram_durable}"])
    assert found["bus"].startswith("✓ bus:")


async def test_a_bus_not_running_or_refusing_the_login_fails_the_bus_line(
    nats_access: BusAccess, workdir
):
    raw = table("http://127.0.0.1:9/v1")
    [nothing] = await doctor_bus.findings(config_file.parse(raw, {}), workdir)
    assert nothing.line() == (
        "✗ bus: bus.url: not set, and no running `stellaclaw up` recorded the observer "
        f"credentials in {lifecycle.auth_dir(workdir) / 'observer'} — start Stellaclaw "
        "(`stellaclaw up`), or pass the --workdir it runs in"
    )
    login = {
        "url": nats_access.url,
        "services": {"observer": {"user": "observer", "password": "x"}},
    }
    [refused] = await doctor_bus.findings(config_file.parse(raw | {"bus": login}, {}), workdir)
    assert refused.status == "failed"
    assert refused.line().startswith(f"✗ bus: NATS at {nats_access.url} refused the login as ")
    assert refused.fix == (
        "check bus.url and the observer login ([bus.services.observer], else bus.user/password)"
    )


def models_config(openai_url: str, anthropic_url: str, auth_file: Path) -> Config:
    gone = f"http://127.0.0.1:{closed_port()}/v1"
    models = {
        "main": {"provider": "openai_chat", "base_url": openai_url, "api_key": KEY, "model": MODEL},
        "wrongkey": {"provider": "openai_responses", "base_url": openai_url, "api_key": "sk-wrong"},
        "unlisted": {"provider": "openai_chat", "base_url": openai_url, "api_key": KEY},
        "gone": {"provider": "openai_chat", "base_url": gone, "model": MODEL},
        "nokey": {"provider": "openai_chat", "base_url": openai_url, "model": MODEL},
        "claude": {"provider": "anthropic", "base_url": anthropic_url, "api_key": "sk-ant-doctor"},
        "codex": {"provider": "codex", "auth_file": str(auth_file)},
        "nocodex": {"provider": "codex", "auth_file": str(auth_file.parent / "none.json")},
    }
    models["wrongkey"]["model"] = models["unlisted"]["model"] = "gpt-unknown"
    models["claude"]["model"] = models["codex"]["model"] = "any"
    models["nocodex"]["model"] = "any"
    return config_file.parse({"default_model": "main", "models": models}, {})


async def test_each_model_is_asked_once_and_a_refused_key_or_dead_endpoint_fails(tmp_path):
    auth_file = tmp_path / "auth.json"
    tokens = {"access_token": "at", "refresh_token": "rt", "account_id": "acct_1"}
    auth_file.write_bytes(msgspec.json.encode({"tokens": tokens}))
    async with llm_api(api_key=KEY) as openai, anthropic_api(api_key="sk-ant-doctor") as claude:
        openai.models = [MODEL]
        claude.models = ["claude-doctor"]
        config = models_config(openai.base_url, claude.base_url, auth_file)
        found = lines(await doctor_http.model_findings(config.models))
    base = openai.base_url
    gone = config.models["gone"].base_url
    assert found["model main"] == f"✓ model main: {base} accepted the key and serves {MODEL!r}"
    assert found["model wrongkey"] == (
        f"✗ model wrongkey: {base}/models refused the key (HTTP 401) — fix models.wrongkey.api_key"
    )
    assert found["model unlisted"] == (
        f"! model unlisted: {base} accepted the key, but does not list 'gpt-unknown' — "
        "check models.unlisted.model (the provider's model id)"
    )
    assert found["model gone"] == (
        f"✗ model gone: cannot reach {gone}: ConnectError: All connection attempts failed — "
        "check models.gone.base_url and the network"
    )
    assert found["model nokey"] == (
        f"✗ model nokey: {base}/models wants a key (HTTP 401) — set models.nokey.api_key"
    )
    assert found["model claude"] == f"✓ model claude: {claude.base_url} accepted the key"
    assert found["model codex"] == f"✓ model codex: {auth_file}: signed in"
    missing = tmp_path / "none.json"
    assert found["model nocodex"] == (
        f"✗ model nocodex: codex auth file {str(missing)!r} not found — "
        "run `codex login` as the session's user on its host"
    )
    assert [tap["x-api-key"] for tap in claude.listings] == ["sk-ant-doctor"]
    assert sorted(tap.get("authorization", "") for tap in openai.listings) == sorted(
        ["", f"Bearer {KEY}", f"Bearer {KEY}", "Bearer sk-wrong"]
    )


async def test_a_remote_with_a_changed_host_key_or_an_unknown_key_fails_with_the_fix(
    server: SshServer, remote_root, tmp_path
):
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    other_host = stranger.export_public_key().decode().strip()
    unknown_key = tmp_path / "unknown_key"
    unknown_key.write_bytes(stranger.export_private_key())
    unknown_key.chmod(0o600)
    raw = {
        "good": server.remote(remote_root),
        "moved": server.remote(remote_root, host_key=other_host),
        "stranger": server.remote(remote_root, key_file=str(unknown_key)),
    }
    config = config_file.parse(table("http://127.0.0.1:9/v1", remotes=raw), {})
    found = lines(await doctor_remotes.findings(config.remotes))
    address = f"127.0.0.1:{server.port}"
    assert found["remote good"].startswith("✓ remote good: stellaclaw@")
    assert found["remote moved"] == (
        f"✗ remote moved: the host key of {address} does not match the pinned host_key — if the "
        f"host key changed on purpose, pin the new one (`ssh-keyscan -p {server.port} "
        "127.0.0.1`) as host_key"
    )
    assert found["remote stranger"] == (
        f"✗ remote stranger: {address} refused the key in key_file for user 'stellaclaw' — "
        "add key_file's public key to ~stellaclaw/.ssh/authorized_keys there"
    )


async def test_the_telegram_token_is_checked_with_get_me_and_never_shown(
    telegram: TelegramAPIServer,
):
    good = TelegramConfig(bot_token=telegram.token, api_base=telegram.base_url)
    [found] = await doctor_http.telegram_findings(good)
    assert found.line() == "✓ telegram: the token belongs to @stellaclaw_test_bot (bot 123456789)"
    wrong = TelegramConfig(bot_token="123456789:AAE-revoked-token", api_base=telegram.base_url)
    [refused] = await doctor_http.telegram_findings(wrong)
    assert refused.line() == (
        f"✗ telegram: {telegram.base_url} refused telegram.bot_token (401 Unauthorized) — "
        "put the token @BotFather gave into telegram.bot_token"
    )
    gone = TelegramConfig(
        bot_token="123:secret-token", api_base=f"http://127.0.0.1:{closed_port()}"
    )
    [unreachable] = await doctor_http.telegram_findings(gone)
    assert unreachable.status == "failed"
    assert "secret-token" not in unreachable.line()
    assert [call.method for call in telegram.calls] == ["getMe", "getMe"]


@pytest.mark.parametrize("provider", ["openai_chat", "anthropic"])
async def test_a_model_endpoint_without_a_model_list_is_a_warning(provider, tmp_path):
    async with llm_api() as fake:  # a POST-only server: every other route is 404
        model = {
            "provider": provider,
            "base_url": f"{fake.base_url}/x",
            "api_key": "k",
            "model": "m",
        }
        config = config_file.parse({"default_model": "m", "models": {"m": model}}, {})
        [found] = await doctor_http.model_findings(config.models)
        fake.failures.clear()  # the fake records the unknown route; here it is the point
    assert found.line() == (
        f"! model m: {fake.base_url}/x/models answered HTTP 404, so the key could not be "
        "checked — check models.m.base_url (most end in /v1)"
    )
