"""shared.bus against a real nats-server: the settle policy, publish dedupe, the layout."""

import asyncio

import msgspec
import pytest

from shared import bus as sc_bus
from shared import layout, subjects
from shared.config import BusConfig
from shared.errors import ConfigError, InputError, TransientError
from shared.messages.events import EVENT, BadMessage, DeadLettered
from shared.messages.inbound import RECEIVED, MessageReceived
from tests.kit.waiting import eventually
from tests.unit.shared.samples import message_received


async def probe(bus, **settings) -> sc_bus.Consumer:
    """A durable on every SC_IN partition, made as the launcher makes them."""
    consumer = sc_bus.Consumer(
        stream=subjects.IN_STREAM,
        durable="probe",
        filter_subject=subjects.INBOUND_ALL.replace("*.*", ">"),
        **settings,
    )
    await bus.js.add_consumer(consumer.stream, layout.consumer_config(consumer))
    return consumer


async def test_a_malformed_message_is_terminated_counted_and_reported(bus, nats_access):
    handled: list[MessageReceived] = []

    async def handle(message: MessageReceived, envelope: sc_bus.Envelope) -> None:
        handled.append(message)

    consumer = await probe(bus)
    await bus.watch(subjects.BAD_MESSAGE_EVENT)
    await bus.publish(
        subjects.inbound("telegram", "tg_1"), b'{"kind": "message_received", "text": 5}'
    )
    await bus.publish(subjects.inbound("telegram", "tg_1"), message_received("tg_1", "hello"))
    stop = asyncio.Event()
    async with sc_bus.connected(nats_access, "probe", role="admin") as conn:
        task = asyncio.create_task(sc_bus.consume(conn, consumer, RECEIVED, handle, stop))
        fact = await bus.next(subjects.BAD_MESSAGE_EVENT, EVENT)
        await eventually(lambda: handled)
        stop.set()
        await task
    assert isinstance(fact, BadMessage)
    assert fact.service == "probe"
    assert fact.stream_seq == 1
    assert "Expected `str`" in fact.reason
    assert [m.text for m in handled] == ["hello"]
    assert conn.counters["bad_messages"] == 1
    assert conn.counters["handled"] == 1


async def test_handler_errors_decide_term_or_retry(bus, nats_access):
    seen: list[tuple[str, int]] = []

    async def handle(message: MessageReceived, envelope: sc_bus.Envelope) -> None:
        seen.append((message.text, envelope.num_delivered))
        if message.text == "refuse":
            raise InputError("refused")
        if message.text == "flaky" and seen.count(("flaky", 1)) == 1:
            raise TransientError("not yet", retry_after_s=0.05)

    consumer = await probe(bus)
    await bus.publish(subjects.inbound("telegram", "tg_1"), message_received("tg_1", "refuse"))
    await bus.publish(subjects.inbound("telegram", "tg_2"), message_received("tg_2", "flaky"))
    stop = asyncio.Event()
    async with sc_bus.connected(nats_access, "probe", role="admin") as conn:
        task = asyncio.create_task(sc_bus.consume(conn, consumer, RECEIVED, handle, stop))
        await eventually(lambda: conn.counters["handled"] == 1)
        stop.set()
        await task
    assert seen.count(("refuse", 1)) == 1
    assert ("refuse", 2) not in seen  # terminated, never redelivered
    assert seen.count(("flaky", 1)) == 2  # retried in hand: no redelivery counted against it
    assert conn.counters["bad_messages"] == 1
    assert conn.counters["handled"] == 1


async def test_publish_with_the_same_msg_id_stores_once(bus, nats_access):
    async with sc_bus.connected(nats_access, "probe", role="admin") as conn:
        message = message_received("tg_5", "once")
        first = await sc_bus.publish(
            conn, subjects.inbound("telegram", "tg_5"), message, msg_id="tg:1:5"
        )
        again = await sc_bus.publish(
            conn, subjects.inbound("telegram", "tg_5"), message, msg_id="tg:1:5"
        )
    assert first.duplicate is None
    assert again.duplicate is True
    assert again.seq == first.seq


async def test_inbound_messages_land_in_their_partition(bus):
    await bus.publish(subjects.inbound("telegram", "tg_77"), message_received("tg_77", "x"))
    stored = []
    for partition in range(4):
        stored += await bus.stored(
            subjects.IN_STREAM, subjects.inbound_partition(partition), RECEIVED
        )
    assert [m.chat.conversation_id for m in stored] == ["tg_77"]


async def test_layout_is_idempotent_and_refuses_a_changed_partitioning(bus):
    await layout.ensure(bus.js, BusConfig(in_partitions=4))  # the fixture made it once
    with pytest.raises(ConfigError, match=r"bus\.in_partitions"):
        await layout.ensure(bus.js, BusConfig(in_partitions=8))


async def test_the_service_answers_discovery_with_its_counters(bus, nats_access):
    async with sc_bus.connected(nats_access, "probe", role="admin") as conn:
        service = await sc_bus.register(conn, "a probe", "0.1.0")
        conn.counters["bad_messages"] += 2
        ping = await bus.nc.request("$SRV.PING.probe", b"", timeout=5)
        stats = await bus.nc.request("$SRV.STATS.probe", b"", timeout=5)
        counters = await bus.nc.request(subjects.counters("probe"), b"", timeout=5)
        await service.stop()
    assert msgspec.json.decode(ping.data)["name"] == "probe"
    endpoint = msgspec.json.decode(stats.data)["endpoints"][0]
    for answered in (endpoint["data"], msgspec.json.decode(counters.data)):
        assert answered.pop("rss_bytes") > 10_000_000  # this process's resident memory
        assert answered == {"bad_messages": 2}


async def test_a_message_that_keeps_failing_is_dead_lettered_and_the_lane_moves_on(
    bus, nats_access
):
    seen: list[tuple[str, int]] = []

    async def handle(message: MessageReceived, envelope: sc_bus.Envelope) -> None:
        seen.append((message.text, envelope.num_delivered))
        if message.text == "poison":
            raise RuntimeError("this message always fails")

    consumer = await probe(bus, max_ack_pending=1, max_deliver=3)  # one lane
    await bus.watch(subjects.DEAD_LETTER_EVENT)
    await bus.publish(subjects.inbound("telegram", "tg_1"), message_received("tg_1", "poison"))
    await bus.publish(subjects.inbound("telegram", "tg_1"), message_received("tg_1", "next"))
    stop = asyncio.Event()
    async with sc_bus.connected(nats_access, "probe", role="admin") as conn:
        task = asyncio.create_task(sc_bus.consume(conn, consumer, RECEIVED, handle, stop))
        fact = await bus.next(subjects.DEAD_LETTER_EVENT, EVENT, timeout_s=15)
        await eventually(lambda: ("next", 1) in seen)
        stop.set()
        await task
    assert isinstance(fact, DeadLettered)
    assert (fact.service, fact.stream, fact.stream_seq, fact.deliveries) == (
        "probe",
        subjects.IN_STREAM,
        1,
        3,
    )
    assert fact.last_error == "RuntimeError: this message always fails"
    assert seen == [("poison", 1), ("poison", 2), ("poison", 3), ("next", 1)]
    assert conn.counters["dead_letters"] == 1
    assert (await bus.js.consumer_info(consumer.stream, consumer.durable)).num_ack_pending == 0


async def test_a_message_whose_every_delivery_crashed_is_dead_lettered_unhandled(bus, nats_access):
    handled: list[str] = []

    async def handle(message: MessageReceived, envelope: sc_bus.Envelope) -> None:
        handled.append(message.text)

    consumer = await probe(bus, max_ack_pending=1, max_deliver=2, ack_wait_s=0.5)
    await bus.watch(subjects.DEAD_LETTER_EVENT)
    await bus.publish(subjects.inbound("telegram", "tg_1"), message_received("tg_1", "crasher"))
    crashing = await bus.js.pull_subscribe_bind(durable=consumer.durable, stream=consumer.stream)
    for _ in range(2):  # a process took it and died before settling it, twice
        await crashing.fetch(1, timeout=5)
    await crashing.unsubscribe()
    await bus.publish(subjects.inbound("telegram", "tg_1"), message_received("tg_1", "next"))
    stop = asyncio.Event()
    async with sc_bus.connected(nats_access, "probe", role="admin") as conn:
        task = asyncio.create_task(sc_bus.consume(conn, consumer, RECEIVED, handle, stop))
        fact = await bus.next(subjects.DEAD_LETTER_EVENT, EVENT, timeout_s=10)
        await eventually(lambda: handled == ["next"])
        stop.set()
        await task
    assert isinstance(fact, DeadLettered)
    assert fact.deliveries == 3
    assert "without a result" in fact.last_error


async def test_a_long_outage_is_waited_out_in_hand_and_never_dead_lettered(bus, nats_access):
    attempts: list[int] = []

    async def handle(message: MessageReceived, envelope: sc_bus.Envelope) -> None:
        attempts.append(envelope.num_delivered)
        if len(attempts) <= 25:  # the platform is down for 25 tries, far past max_deliver
            raise TransientError("the platform is down", retry_after_s=0.01)

    consumer = await probe(bus, max_deliver=3, max_backoff_s=0.01)  # a compressed clock
    await bus.publish(subjects.inbound("telegram", "tg_1"), message_received("tg_1", "wait"))
    stop = asyncio.Event()
    async with sc_bus.connected(nats_access, "probe", role="admin") as conn:
        task = asyncio.create_task(sc_bus.consume(conn, consumer, RECEIVED, handle, stop))
        await eventually(lambda: conn.counters["handled"] == 1)
        stop.set()
        await task
    assert attempts == [1] * 26  # one delivery, retried in hand
    assert conn.counters["dead_letters"] == 0


async def test_binding_a_durable_the_launcher_never_made_is_a_config_error(bus, nats_access):
    missing = sc_bus.Consumer(stream=subjects.IN_STREAM, durable="nobody", filter_subject="x")
    async with sc_bus.connected(nats_access, "probe", role="admin") as conn:
        with pytest.raises(ConfigError, match="durable nobody of stream SC_IN does not exist"):
            await sc_bus.bind(conn, missing)


async def test_the_layout_updates_an_existing_durable_to_its_current_settings(bus):
    [lane] = layout.durables(BusConfig(in_partitions=4))["delivery"]
    older = msgspec.structs.replace(lane, ack_wait_s=3.0, max_ack_pending=1)  # the foundation's
    await bus.js.add_consumer(lane.stream, layout.consumer_config(older))
    assert (await bus.js.consumer_info(lane.stream, lane.durable)).config.ack_wait == 3.0
    await layout.ensure(bus.js, BusConfig(in_partitions=4))
    info = await bus.js.consumer_info(lane.stream, lane.durable)
    assert (info.config.ack_wait, info.config.max_ack_pending) == (
        lane.ack_wait_s,
        lane.max_ack_pending,
    )
