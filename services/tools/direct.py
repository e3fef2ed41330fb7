"""Calls that must reach one runner process (DESIGN §6): `sc.tool.direct.<runner_id>`.

A call on a shell session or a download another runner of the pool holds is taken from the
pool's durable by any runner, which forwards it here and publishes the outcome the holder answers
(no responders: the holder is gone, `<what> ended: its runner restarted`). Sessions waiting on a
call ping the runner that announced it (`PingRunner`), so a killed runner's calls are reported
within seconds instead of after the ack wait.
"""

import asyncio
import logging

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.tools import handles, runner
from services.tools.runner import Outcome
from shared import bus, subjects
from shared.messages.tools import (
    DIRECT_REQUEST,
    OUTCOME,
    PingRunner,
    RunnerAlive,
    RunTool,
)

FORWARD_SLACK_S = 30.0  # past the forwarded call's own limit
log = logging.getLogger(__name__)


def forwarder(conn: bus.Connection) -> runner.Forward:
    async def forward(request: RunTool, held: handles.HeldElsewhereError) -> Outcome:
        subject = subjects.tool_runner(held.runner_id)
        try:
            reply = await conn.nc.request(
                subject, bus.encode(request), timeout=request.timeout_s + FORWARD_SLACK_S
            )
        except nats.errors.NoRespondersError:
            return runner.failed("not_found", f"{held.what} ended: its runner restarted")
        except (TimeoutError, nats.errors.Error) as exc:
            return runner.failed("failed", f"the runner holding {held.what} did not answer: {exc}")
        found = await bus.decoded(conn, OUTCOME, reply.data, subject)
        if found is None:
            return runner.failed("failed", f"the runner holding {held.what} answered malformed")
        return found

    return forward


async def listen(host: runner.Host) -> tuple[Subscription, set[asyncio.Task[None]]]:
    """Answer forwarded calls and pings for this runner; each call runs in its own task."""
    tasks: set[asyncio.Task[None]] = set()

    async def answer(msg: Msg) -> None:
        request = await bus.decoded(host.conn, DIRECT_REQUEST, msg.data, msg.subject)
        match request:
            case PingRunner(session_id=session, call_ids=calls):
                holding = [c for c in calls if (session, c) in host.running.tasks]
                alive = RunnerAlive(runner_id=host.runner_id, holding=holding)
                await msg.respond(bus.encode(alive))
            case RunTool():
                task = asyncio.create_task(_serve(host, request, msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    subscription = await host.conn.nc.subscribe(subjects.tool_runner(host.runner_id), cb=answer)
    return subscription, tasks


async def _serve(host: runner.Host, request: RunTool, msg: Msg) -> None:
    """Run a forwarded call here (no second forward) and answer with its outcome."""

    async def no_announcement(limit_s: float) -> None:
        """The forwarding runner announced the call (ToolStarted) already."""

    hooks = runner.Hooks(started=no_announcement)
    work = runner.outcome(request, 1, host.place, hooks)
    key = (request.session_id, request.call_id)
    found = await runner.cancellable(host.running, key, (work, hooks.cut_short), None)
    try:
        await msg.respond(msgspec.json.encode(found))
    except nats.errors.Error as exc:
        log.warning("the forwarded call %s could not be answered: %r", request.call_id, exc)
