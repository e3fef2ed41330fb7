"""`stellaclaw up` as a real subprocess against the kit's fakes: for end-to-end tests and bench/."""

import asyncio
import os
import signal
import sysconfig
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import nats.errors
from nats.aio.client import Client
from nats.errors import NoRespondersError, NoServersError

from shared import lifecycle
from shared.bus import BusAccess, Credential
from tests.kit.nats import connect_as

SERVICES = ("conversation", "session", "tools", "delivery", "ingress_telegram")
KEY_VARIABLE = "STELLACLAW_E2E_KEY"
TOKEN_VARIABLE = "STELLACLAW_E2E_BOT_TOKEN"


def stellaclaw() -> str:
    """The console script beside our Python (the venv's bin is not always on PATH)."""
    return str(Path(sysconfig.get_path("scripts")) / "stellaclaw")


def write_config(
    path: Path, *, llm_base_url: str, telegram_base_url: str, user_ids: Sequence[int]
) -> None:
    allowed = ", ".join(str(user_id) for user_id in user_ids)
    path.write_text(
        f"""
default_model = "main"
shutdown_grace_s = 5

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


class Stack:
    """A running `stellaclaw up`: its process, workdir and a NATS client on its bus."""

    def __init__(self, process: asyncio.subprocess.Process, workdir: Path) -> None:
        self.process = process
        self.workdir = workdir
        self.nc: Client | None = None

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
