"""`stellaclaw up` as a real subprocess against the kit's fakes: for end-to-end tests and bench/."""

import asyncio
import contextlib
import os
import signal
import sys
import sysconfig
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.errors import NoRespondersError, NoServersError
from nats.js.errors import KeyNotFoundError, NoKeysError, NotFoundError

from shared import lifecycle, subjects
from shared.bus import BusAccess, Credential
from shared.messages.history import HISTORY, HistoryEvent
from tests.kit.llm_api import OpenAIChatServer, llm_api
from tests.kit.nats import connect_as
from tests.kit.telegram_api import TelegramAPIServer, telegram_api

SERVICES = ("conversation", "session", "tools", "delivery", "ingress_telegram")
KEY_VARIABLE = "STELLACLAW_E2E_KEY"
TOKEN_VARIABLE = "STELLACLAW_E2E_BOT_TOKEN"
KEY = "sk-e2e-stack"


class LeaseValue(msgspec.Struct, frozen=True, kw_only=True):
    """A session lease's value (KV `subjects.LEASE_BUCKET`) as the session service writes it."""

    owner_id: str
    pid: int


class Pong(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a `$SRV.PING` answer that tells instances apart."""

    instance_id: str = msgspec.field(name="id")


_LEASE: msgspec.json.Decoder[LeaseValue] = msgspec.json.Decoder(LeaseValue)
_PONG: msgspec.json.Decoder[Pong] = msgspec.json.Decoder(Pong)


def stellaclaw() -> str:
    """The console script beside our Python (the venv's bin is not always on PATH)."""
    return str(Path(sysconfig.get_path("scripts")) / "stellaclaw")


def write_config(
    path: Path,
    *,
    llm_base_url: str,
    telegram_base_url: str,
    user_ids: Sequence[int],
    shutdown_grace_s: float = 5,
) -> None:
    allowed = ", ".join(str(user_id) for user_id in user_ids)
    path.write_text(
        f"""
default_model = "main"
shutdown_grace_s = {shutdown_grace_s:g}

[models.main]
provider = "openai_chat"
base_url = "{llm_base_url}"
api_key = "${{{KEY_VARIABLE}}}"
model = "gpt-e2e"

[telegram]
bot_token = "${{{TOKEN_VARIABLE}}}"
api_base = "{telegram_base_url}"
allowed_user_ids = [{allowed}]

[bus]
in_partitions = 4
""",
        encoding="utf-8",
    )


def add_every_provider(path: Path, base_url: str) -> None:
    """A model of each other wire format beside `main`: configured, never called (the session's
    memory must not pay for a provider until it is used)."""
    with path.open("a", encoding="utf-8") as file:
        file.write(EVERY_PROVIDER.format(base_url=base_url))


EVERY_PROVIDER = """
[models.responses]
provider = "openai_responses"
base_url = "{base_url}"
model = "gpt-responses"
reasoning = {{ effort = "low" }}

[models.claude]
provider = "anthropic"
base_url = "{base_url}"
api_key = "unused"
model = "claude-e2e"
capabilities = ["tools", "image_in", "pdf_in"]

[models.codex]
provider = "codex"
model = "gpt-codex"
auth_file = "/nonexistent/auth.json"
"""


class Stack:
    """A running `stellaclaw up`: its process, workdir and a NATS client on its bus."""

    def __init__(self, process: asyncio.subprocess.Process, workdir: Path) -> None:
        self.process = process
        self.workdir = workdir
        self.nc: Client | None = None
        self.external: BusAccess | None = None  # the logins of a bus `up` did not start

    @property
    def bus_url(self) -> str:
        return (self.workdir / "run" / "bus.url").read_text(encoding="utf-8").strip()

    def pid(self, service: str) -> int:
        return int((self.workdir / "run" / f"{service}.pid").read_text(encoding="utf-8"))

    async def wait_ready(self, services: tuple[str, ...], timeout_s: float = 60.0) -> Client:
        """Wait until the bus is up and every service answers `$SRV.PING.<name>`."""
        async with asyncio.timeout(timeout_s):
            while not (self.workdir / "run" / "bus.url").exists():
                if self.process.returncode is not None:
                    raise AssertionError(f"stellaclaw up exited with {self.process.returncode}")
                await asyncio.sleep(0.05)
            while True:  # a bus.url left by a killed `up` may name a bus that is gone
                try:
                    self.nc = await self.connect("admin")
                    break
                except (OSError, NoServersError, nats.errors.Error):
                    await asyncio.sleep(0.1)
            for service in services:
                await self.wait_service(service)
        return self.nc

    def access(self) -> BusAccess:
        """Every role's login to the bus this `up` started (passwords in `run/auth/`)."""
        if self.external is not None:
            return self.external
        auth = lifecycle.auth_dir(self.workdir)
        logins = {
            path.name: Credential(user=path.name, password=path.read_text(encoding="utf-8").strip())
            for path in auth.iterdir()
        }
        return BusAccess(url=self.bus_url, logins=logins)

    async def connect(self, role: str) -> Client:
        """A plain client logged in as `role`."""
        return await connect_as(self.access(), role)

    async def wait_service(self, service: str, *, not_pid: int | None = None) -> None:
        """Until an instance of `service` (other than process `not_pid`) answers a ping."""
        assert self.nc is not None
        while True:
            try:
                await self.nc.request(f"$SRV.PING.{service}", b"", timeout=0.5)
                if not_pid is None or self.pid(service) != not_pid:
                    return
            except (NoRespondersError, TimeoutError):
                pass
            await asyncio.sleep(0.05)

    async def wait_drained(self, stream: str, durable: str, timeout_s: float = 30.0) -> None:
        """Until the durable has nothing pending and nothing un-acked (its work is done)."""
        assert self.nc is not None
        js = self.nc.jetstream()
        async with asyncio.timeout(timeout_s):
            while True:
                info = await js.consumer_info(stream, durable)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return
                await asyncio.sleep(0.05)

    async def wait_instances(self, service: str, count: int, timeout_s: float = 30.0) -> None:
        """Until `count` instances of `service` answer one `$SRV.PING.<service>`."""
        assert self.nc is not None
        async with asyncio.timeout(timeout_s):
            while True:
                inbox = self.nc.new_inbox()
                pongs = await self.nc.subscribe(inbox)
                found: set[str] = set()
                try:
                    await self.nc.publish(f"$SRV.PING.{service}", b"", reply=inbox)
                    with contextlib.suppress(TimeoutError):
                        while len(found) < count:
                            found.add(
                                _PONG.decode((await pongs.next_msg(timeout=0.5)).data).instance_id
                            )
                finally:
                    await pongs.unsubscribe()
                if len(found) >= count:
                    return

    async def sessions(self, conversation_id: str) -> list[str]:
        """The ids of the conversation's sessions that have history, sorted."""
        assert self.nc is not None
        info = await self.nc.jetstream().stream_info(
            subjects.HISTORY_STREAM, subjects_filter=subjects.HISTORY_ALL
        )
        prefix = subjects.history(f"{conversation_id}_")
        found = [name for name in info.state.subjects or {} if name.startswith(prefix)]
        return sorted(name.removeprefix(subjects.history("")) for name in found)

    async def history(self, session_id: str) -> list[HistoryEvent]:
        """The session's events as SC_HIST stores them, oldest first."""
        assert self.nc is not None
        js = self.nc.jetstream()
        subject = subjects.history(session_id)
        events: list[HistoryEvent] = []
        seq = 0
        while True:
            try:
                stored = await js.get_msg(
                    subjects.HISTORY_STREAM, seq=seq + 1, subject=subject, next=True
                )
            except NotFoundError:
                return events
            seq = stored.seq or 0
            events.append(HISTORY.decode(stored.data or b""))

    async def lease_holders(self) -> dict[str, int]:
        """Session id: the pid holding its lease, for every lease held now (none expired)."""
        assert self.nc is not None
        leases = await self.nc.jetstream().key_value(subjects.LEASE_BUCKET)
        try:
            keys = await leases.keys()
        except NoKeysError:
            return {}
        found: dict[str, int] = {}
        sessions = subjects.session_lease_key("")
        for key in (key for key in keys if key.startswith(sessions)):  # not `leader.…`
            with contextlib.suppress(KeyNotFoundError):  # released or expired meanwhile
                entry = await leases.get(key)
                if entry.value:
                    session_id = key.removeprefix(subjects.session_lease_key(""))
                    found[session_id] = _LEASE.decode(entry.value).pid
        return found

    def kill(self, service: str) -> int:
        pid = self.pid(service)
        os.kill(pid, signal.SIGKILL)
        return pid

    def children(self) -> dict[int, str]:
        """The launcher's child processes (pid: command name): the services and nats-server."""
        return children_of(self.process.pid)

    def interrupt(self) -> None:
        """Ctrl-C in a terminal: SIGINT to the whole process group of `up`."""
        os.killpg(self.process.pid, signal.SIGINT)

    async def stop(self, timeout_s: float = 30.0) -> int:
        if self.nc is not None:
            await self.nc.close()
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout_s):
            return await self.process.wait()


def children_of(parent: int) -> dict[int, str]:
    """Processes whose parent is `parent` (pid: command name), read from /proc."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].rpartition(") ")
        if int(rest.split()[1]) == parent:
            found[int(stat.parent.name)] = name
    return found


def is_gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text.rpartition(") ")[2].split()[0] in ("Z", "X")


async def run_cli(*arguments: str, env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run `stellaclaw <arguments>` to its end: the exit code and what it wrote to stderr."""
    process = await asyncio.create_subprocess_exec(
        stellaclaw(),
        *arguments,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, err.decode()


async def start_up(config: Path, workdir: Path) -> Stack:
    """Start `stellaclaw up` in a session of its own (it inherits the environment)."""
    with (workdir.parent / "up.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            stellaclaw(),
            *("up", "--config", str(config), "--workdir", str(workdir)),
            stdout=log,
            stderr=log,
            start_new_session=True,  # so a test's Ctrl-C (killpg) reaches only this `up`
        )
    return Stack(process, workdir)


@asynccontextmanager
async def stack(config: Path, workdir: Path) -> AsyncIterator[Stack]:
    """A running `stellaclaw up`; SIGTERM on exit, which must exit 0."""
    running = await start_up(config, workdir)
    try:
        yield running
    finally:
        code = await running.stop()
        assert code == 0, f"stellaclaw up exited with {code}; see {workdir.parent / 'up.log'}"


@asynccontextmanager
async def replica(
    running: Stack, service: str, config: Path, owner_id: str, *, pools: Sequence[str] = ()
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A second process of `service` on the stack's bus and workdir, outside the launcher, with
    a slot id of its own (`--owner-id`), logging to `logs/<service>-replica.log`; a `tools`
    replica serves only `pools` when some are named (`--pool`, as `stellaclaw run tools --pool`
    passes it on). It runs the module, as `stellaclaw run` does. Stopped on exit."""
    process = await spawn_replica(running, service, config, owner_id, pools)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def spawn_replica(
    running: Stack, service: str, config: Path, owner_id: str, pools: Sequence[str] = ()
) -> asyncio.subprocess.Process:
    """Start one more process of `service` (see `replica`); the caller stops it."""
    argv = ["-m", f"services.{service}", "--config", str(config)]
    argv += ["--workdir", str(running.workdir), "--owner-id", owner_id]
    argv += [part for pool in pools for part in ("--pool", pool)]
    with (running.workdir / "logs" / f"{service}-replica.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdout=log, stderr=log, start_new_session=True
        )


class Fakes(msgspec.Struct, frozen=True, kw_only=True):
    """The kit's Bot API and model servers, and a config that points `stellaclaw up` at them."""

    telegram: TelegramAPIServer
    llm: OpenAIChatServer
    config: Path
    workdir: Path


@asynccontextmanager
async def fakes(
    root: Path,
    setenv: Callable[[str, str], None],
    user_ids: Sequence[int],
    shutdown_grace_s: float = 5,
) -> AsyncIterator[Fakes]:
    """The fakes, and `root/stellaclaw.toml` for `root/workdir`; `setenv` (a test's
    `monkeypatch.setenv`) puts the secrets where `up` and its children read them."""
    async with telegram_api() as telegram, llm_api(api_key=KEY) as llm:
        telegram.outbox.hide_panels = True  # these tests read the answers
        setenv(KEY_VARIABLE, KEY)
        setenv(TOKEN_VARIABLE, telegram.token)
        config = root / "stellaclaw.toml"
        write_config(
            config,
            llm_base_url=llm.base_url,
            telegram_base_url=telegram.base_url,
            user_ids=user_ids,
            shutdown_grace_s=shutdown_grace_s,
        )
        yield Fakes(telegram=telegram, llm=llm, config=config, workdir=root / "workdir")
