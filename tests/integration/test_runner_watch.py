"""The session's watch on the runners of its calls (DESIGN §6), against a real nats-server: a
runner with no process behind its subject loses its calls at once; a live one keeps them; one
that stopped holding a call loses it on the second ping in a row (a result may be on its way)."""

from services.session import runner_watch
from shared import bus, subjects
from shared.ids import SessionId, ToolCallId
from shared.messages.tools import DIRECT_REQUEST, PingRunner, RunnerAlive

SESSION = SessionId("cli_w_fg1")
C1, C2 = ToolCallId("c1"), ToolCallId("c2")


async def due(watch: runner_watch.Watch) -> list[ToolCallId]:
    watch.next_ping = 0.0  # the test's clock: it is time to ping
    return await watch.lost()


async def test_a_gone_runner_loses_its_calls_and_a_live_one_keeps_them(nats_access):
    holding = {C1, C2}
    async with (
        bus.connected(nats_access, "session") as conn,
        bus.connected(nats_access, "tools") as tools,
    ):

        async def answer(msg) -> None:
            ping = DIRECT_REQUEST.decode(msg.data)
            assert isinstance(ping, PingRunner)
            held = [call for call in ping.call_ids if call in holding]
            await msg.respond(bus.encode(RunnerAlive(runner_id="r-live", holding=held)))

        await tools.nc.subscribe(subjects.tool_runner("r-live"), cb=answer)
        await tools.nc.flush()
        watch = runner_watch.Watch(conn, SESSION)
        watch.started(C1, "r-live")
        watch.started(C2, "r-live")
        watch.started(ToolCallId("c3"), "r-gone")
        assert await due(watch) == ["c3"]  # no responders: lost at once
        assert await due(watch) == []
        holding.discard(C2)
        assert await due(watch) == []  # not held once: its result may be on the way
        assert await due(watch) == ["c2"]
        assert set(watch.holders) == {C1}


async def test_no_ping_before_its_time(nats_access):
    async with bus.connected(nats_access, "session") as conn:
        watch = runner_watch.Watch(conn, SESSION)
        watch.started(C1, "r-gone")
        assert await watch.lost() == []  # the first ping is PING_S after the watch began
        assert await due(watch) == ["c1"]


async def test_a_pool_no_runner_serves_is_known_at_once(nats_access):
    async with (
        bus.connected(nats_access, "session") as conn,
        bus.connected(nats_access, "tools") as tools,
    ):

        async def answer(msg) -> None:
            await msg.respond(b"{}")

        await tools.nc.subscribe(subjects.tool_probe("local"), cb=answer)
        await tools.nc.flush()  # the server has the subscription before the question comes
        assert await runner_watch.is_served(conn, "local") is True
        assert await runner_watch.is_served(conn, "ssh_nobody") is False
