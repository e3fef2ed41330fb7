"""The authenticated bus (DESIGN §11): logins refused, and each role held to its allow lists."""

import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig

from shared import bus as sc_bus
from shared import subjects
from shared.bus import BusAccess, Credential
from shared.errors import ConfigError
from tests.kit.nats import connect_as
from tests.kit.waiting import eventually

REFUSED = (TimeoutError, NatsTimeoutError)  # a denied publish only times out (NATS-AUTH.md)
DELIVERY_DURABLE = subjects.durable("delivery", "telegram")


async def errors_of(access: BusAccess, role: str) -> tuple[Client, list[str]]:
    """A client logged in as `role` and the errors the server reported to it."""
    seen: list[str] = []

    async def record(exc: Exception) -> None:
        seen.append(str(exc))

    nc = await connect_as(access, role, error_cb=record)
    return nc, seen


async def test_a_connection_without_credentials_is_refused_with_a_clear_error(bus, nats_access):
    anonymous = BusAccess(url=nats_access.url)
    with pytest.raises(ConfigError, match="refused the login as no credentials"):
        async with sc_bus.connected(anonymous, "tools"):
            pass


async def test_a_wrong_password_is_refused_naming_the_role(bus, nats_access):
    wrong = BusAccess(url=nats_access.url, logins={"tools": Credential(user="tools", password="x")})
    with pytest.raises(ConfigError, match=r"refused the login as tools: .*bus\.services\.tools"):
        async with sc_bus.connected(wrong, "tools"):
            pass


async def test_an_unreachable_bus_at_start_is_a_config_error(nats_access):
    gone = BusAccess(url="nats://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"cannot reach NATS at nats://127\.0\.0\.1:1:"):
        async with sc_bus.connected(gone, "tools", connect_s=0.3):
            pass


async def test_chat_may_publish_only_its_own_channel(bus, nats_access):
    nc, errors = await errors_of(nats_access, "chat")
    js = nc.jetstream(timeout=1)
    try:
        ack = await js.publish(subjects.inbound("cli", "cli_me"), b"{}", timeout=2)
        assert ack.stream == subjects.IN_STREAM
        for forbidden in (
            subjects.inbound("telegram", "tg_1"),
            subjects.tool_request("local", "tg_1_fg1"),
        ):
            with pytest.raises(REFUSED):
                await js.publish(forbidden, b"{}", timeout=0.5)
    finally:
        await nc.close()
    assert sum("permissions violation for publish" in e for e in errors) == 2
    info = await bus.js.stream_info(subjects.TOOL_STREAM)
    assert info.state.messages == 0


async def test_chat_cannot_touch_deliverys_durable_or_read_its_stream(bus, nats_access):
    before = await bus.js.consumer_info(subjects.OUT_STREAM, DELIVERY_DURABLE)
    nc, _ = await errors_of(nats_access, "chat")
    js = nc.jetstream(timeout=1)
    try:
        changed = ConsumerConfig(
            name=DELIVERY_DURABLE,
            durable_name=DELIVERY_DURABLE,
            ack_wait=1.0,
            filter_subject=subjects.outbound_channel("telegram"),
        )
        with pytest.raises(REFUSED):
            await js.add_consumer(subjects.OUT_STREAM, changed)
        with pytest.raises(REFUSED):
            await js.consumer_info(subjects.OUT_STREAM, DELIVERY_DURABLE)
        with pytest.raises(REFUSED):
            await js.subscribe(
                subjects.outbound_channel("telegram"),
                stream=subjects.OUT_STREAM,
                ordered_consumer=True,
            )
    finally:
        await nc.close()
    after = await bus.js.consumer_info(subjects.OUT_STREAM, DELIVERY_DURABLE)
    assert after.config.ack_wait == before.config.ack_wait


async def test_no_role_can_read_another_roles_inbox(bus, nats_access):
    nc, errors = await errors_of(nats_access, "chat")
    try:
        await nc.subscribe(subjects.inbox_prefix("session") + ".>")
        await nc.flush()
        await eventually(lambda: any("for subscription" in e for e in errors))
    finally:
        await nc.close()


async def test_a_service_cannot_create_a_stream_or_a_durable(bus, nats_access):
    nc, _ = await errors_of(nats_access, "tools")
    js = nc.jetstream(timeout=1)
    try:
        with pytest.raises(REFUSED):
            await js.add_stream(name="ROGUE", subjects=["rogue.>"])
        rogue = ConsumerConfig(durable_name="rogue", filter_subject=subjects.tool_requests("local"))
        with pytest.raises(REFUSED):
            await js.add_consumer(subjects.TOOL_STREAM, rogue)
    finally:
        await nc.close()
    assert "rogue" not in [c.name for c in await bus.js.consumers_info(subjects.TOOL_STREAM)]


async def test_a_permission_violation_is_logged_as_an_error_and_counted(bus, nats_access, caplog):
    async with sc_bus.connected(nats_access, "tools") as conn:
        await conn.nc.publish(subjects.inbound("telegram", "tg_1"), b"{}")
        await conn.nc.flush()
        await eventually(lambda: conn.counters["permission_violations"] == 1)
    [record] = [r for r in caplog.records if "permissions violation" in r.getMessage()]
    assert record.levelname == "ERROR"
    assert subjects.inbound("telegram", "tg_1") in record.getMessage()
