"""`stellaclaw metrics`: one Prometheus endpoint (`metrics.bind`, SPEC §14.1) from what the bus
reports, so no service serves HTTP. `stellaclaw up` serves it too.

Logged in as the read-only `observer`, it sums the facts on SC_EVENTS as they come (a core
subscription: turn, model call and tool durations, tokens, dead letters, bad messages) and, per
scrape (cached CACHE_S), asks every instance for `$SRV.STATS` (counters, resident memory) and
JetStream for stream and consumer state (lag, un-acked, redelivered). HTTP is a minimal HTTP/1.1
server on asyncio: `GET /metrics` answers, anything else is 404 (405 for another method).
"""

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import ConsumerInfo, StreamInfo

from services.launcher import metrics_scrape
from services.launcher.metrics_events import EventTally
from services.launcher.metrics_text import CONTENT_TYPE, Exposition
from shared import config as config_file
from shared import lifecycle, subjects
from shared.bus import BusAccess, Connection, connected
from shared.config import BusConfig, Config
from shared.errors import ConfigError

HELP = "serve Prometheus metrics read from the bus on metrics.bind (`up` serves them too)"
CACHE_S = 1.0  # scrapes within this share one collection
SCRAPE_S = 5.0  # the longest a collection waits for JetStream
READ_S = 5.0  # a client sends its request head within this, or is dropped
REQUEST_LIMIT_BYTES = 16 * 1024
log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    parser.add_argument("--config", type=Path, default=Path("stellaclaw.toml"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--bind", default=None, metavar="HOST:PORT", help="listen here instead of metrics.bind"
    )
    return {}


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C."""
    import uvloop

    from services.launcher.supervisor import services_for
    from shared import logging as service_logging

    try:
        config = config_file.load(args.config, "observer")
        workdir = lifecycle.workdir_of(config, args.workdir)
        bind = config.metrics.bind if args.bind is None else args.bind
        address(bind)
        access = lifecycle.bus_access(config.bus, workdir, "observer", [])
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201 -- the one line the operator reads
        return lifecycle.EXIT_CONFIG
    service_logging.setup("metrics", config.logging.level)
    return uvloop.run(_serve_until_signalled(access, bind, services_for(config)))


async def _serve_until_signalled(access: BusAccess, bind: str, services: Sequence[str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(access, bind, services, stop)
    except OSError as exc:
        log.error("cannot listen on %s: %s", bind, exc.strerror or exc)
        return 1
    except ConfigError as exc:
        log.error("%s", exc)
        return lifecycle.EXIT_CONFIG
    return 0


async def serve_in_up(
    config: Config, found: BusAccess, services: Sequence[str], stop: asyncio.Event
) -> None:
    """`stellaclaw up`'s endpoint, which never ends `up`: a port in use (another stack's, say)
    or a bus that refuses the observer is one warning, and `up` goes on without metrics."""
    bind = config.metrics.bind
    try:
        await serve(observer_access(config.bus, found), bind, services, stop)
    except OSError as exc:
        log.warning("metrics cannot listen on %s (%s); going on without", bind, exc.strerror or exc)
    except ConfigError as exc:
        log.warning("%s; going on without metrics", exc)
    except Exception:  # a fault of the metrics must never stop the services
        log.exception("the metrics endpoint failed; going on without it")


def observer_access(bus: BusConfig, found: BusAccess) -> BusAccess:
    """The observer's login: among the embedded bus's logins, else from the config."""
    login = found.logins.get("observer")
    if login is not None:
        return BusAccess(url=found.url, logins={"observer": login})
    configured = lifecycle.bus_access(bus, Path(), "observer", [])  # bus.url: no workdir read
    return BusAccess(url=found.url, logins=configured.logins)


def address(bind: str) -> tuple[str, int]:
    """`host:port` (SPEC §14.1 `metrics.bind`); "" is off, which a server cannot serve."""
    if not bind:
        raise ConfigError('metrics: metrics.bind is "" (off); set it, or pass --bind HOST:PORT')
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics: bind {bind!r} is not HOST:PORT; fix metrics.bind or --bind")
    return host, int(port)


async def serve(access: BusAccess, bind: str, services: Sequence[str], stop: asyncio.Event) -> None:
    """Serve `bind` until `stop`. OSError: cannot listen; ConfigError: the bus refused."""
    async with serving(access, bind, services) as (host, port):
        log.info("serving Prometheus metrics on http://%s:%d/metrics", host, port)
        await stop.wait()


@asynccontextmanager
async def serving(
    access: BusAccess, bind: str, services: Sequence[str]
) -> AsyncIterator[tuple[str, int]]:
    """The endpoint running, as the address it listens on (port 0 picks a free one)."""
    host, port = address(bind)
    async with connected(access, "metrics", role="observer", connect_s=10.0) as conn:
        metrics = Metrics(conn, services)
        events = await conn.nc.subscribe(subjects.EVENTS_ALL, cb=metrics.taken)
        try:
            server = await asyncio.start_server(
                partial(answer, metrics), host, port, limit=REQUEST_LIMIT_BYTES
            )
            async with server:
                listening = server.sockets[0].getsockname()
                yield listening[0], listening[1]
        finally:
            with contextlib.suppress(nats.errors.Error):
                await events.unsubscribe()


class Metrics:
    """The event tally, and the bus's state collected at most once per CACHE_S."""

    def __init__(self, conn: Connection, services: Sequence[str]) -> None:
        self.conn = conn
        self.services = tuple(services)
        self.streams = metrics_scrape.our_streams(BusConfig())  # names, whatever the settings
        self.tally = EventTally()
        self._lock = asyncio.Lock()
        self._text = ""
        self._at = -math.inf

    async def taken(self, msg: Msg) -> None:
        self.tally.take(msg.data)

    async def text(self) -> str:
        loop = asyncio.get_running_loop()
        async with self._lock:  # a scrape meanwhile waits for this one's text
            if loop.time() - self._at >= CACHE_S:
                self._text = await self._collect()
                self._at = loop.time()
            return self._text

    async def _collect(self) -> str:
        """Ask the instances and JetStream at once; JetStream's silence costs its families."""
        out = Exposition()
        asking = asyncio.ensure_future(metrics_scrape.instances(self.conn.nc))
        try:
            streams, consumers = await self._jetstream()
        finally:
            found = await asking
        metrics_scrape.write_instances(out, found, self.services)
        metrics_scrape.write_jetstream(out, streams, consumers)
        out.family(
            "stellaclaw_jetstream_up",
            "gauge",
            "1 when JetStream answered this scrape with the state of our streams and durables.",
            [((), 1 if streams else 0)],
        )
        self.tally.write(out)
        return out.text()

    async def _jetstream(self) -> tuple[list[StreamInfo], list[ConsumerInfo]]:
        js = self.conn.nc.jetstream(timeout=SCRAPE_S)
        try:
            async with asyncio.timeout(SCRAPE_S):
                return await metrics_scrape.jetstream(js, self.streams)
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("no stream and consumer state this scrape: %r", exc)
            return [], []


async def answer(
    metrics: Metrics, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One HTTP/1.1 request, then the connection closes."""
    try:
        async with asyncio.timeout(READ_S):
            head = await reader.readuntil(b"\r\n\r\n")
        method, _, rest = head.decode("latin-1").partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if path != "/metrics":
            status, body = "404 Not Found", b"not found: try /metrics\n"
        elif method not in ("GET", "HEAD"):
            status, body = "405 Method Not Allowed", b"only GET\n"
        else:
            status, body = "200 OK", (await metrics.text()).encode()
        writer.write(_response(status, body, is_head=method == "HEAD"))
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass  # a client that went away or never finished its request: nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _response(status: str, body: bytes, *, is_head: bool) -> bytes:
    kind = CONTENT_TYPE if status.startswith("200") else "text/plain; charset=utf-8"
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + (b"" if is_head else body)
