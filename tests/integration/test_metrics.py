"""The Prometheus endpoint against a real nats-server: instances answering `$SRV.STATS` as the
services register (counters, resident memory), durable consumer lag, and the facts on SC_EVENTS
published as the services publish them, scraped over real HTTP."""

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest

from services.launcher import metrics
from shared import bus as shared_bus
from shared import config as config_file
from shared import layout, subjects
from shared.config import BusConfig
from shared.errors import ConfigError
from shared.ids import ConversationId, SessionId, ToolCallId, TurnId
from shared.messages.contract import BusMessage
from shared.messages.events import BadMessage, DeadLettered, ModelUsed, ToolEnded, TurnEnded
from shared.messages.history import Usage
from tests.kit.waiting import eventually_async

CONV = ConversationId("tg_42")
SESSION = SessionId("tg_42_s1")
TURN = TurnId("tg_42_s1_t1")
SERVICES = ("conversation", "delivery")
MODELS = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "x"}}}


class Scraper:
    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url

    async def text(self) -> str:
        response = await self.client.get(self.url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        return response.text

    async def until(self, line: str, timeout_s: float = 10.0) -> str:
        """The first scrape that has `line` (the endpoint caches each scrape for a second)."""

        async def found() -> str | None:
            text = await self.text()
            return text if line in text.splitlines() else None

        return await eventually_async(found, timeout_s, what=f"a scrape with {line!r}")


@asynccontextmanager
async def endpoint(access) -> AsyncIterator[Scraper]:
    async with (
        metrics.serving(access, "127.0.0.1:0", SERVICES) as (host, port),
        httpx.AsyncClient() as client,
    ):
        yield Scraper(client, f"http://{host}:{port}/metrics")


def value(text: str, sample: str) -> float:
    """The value of the one sample line starting with `sample` (name and labels)."""
    [line] = [line for line in text.splitlines() if line.startswith(sample + " ")]
    return float(line.rsplit(" ", 1)[1])


async def test_instances_report_their_counters_and_memory_and_a_stopped_one_disappears(
    bus, nats_access
):
    async with endpoint(nats_access) as scrape:
        async with shared_bus.connected(nats_access, "delivery") as conn:
            service = await shared_bus.register(conn, "delivery", "0.1.0")
            conn.counters["handled"] += 5
            conn.counters["delivery_failed"] += 2
            instance = f'service="delivery",instance_id="{service.id}"'
            text = await scrape.until('stellaclaw_up{service="delivery"} 1')
            assert 'stellaclaw_up{service="conversation"} 0' in text.splitlines()
            assert value(text, f"stellaclaw_messages_handled_total{{{instance}}}") == 5
            assert value(text, f"stellaclaw_delivery_failures_total{{{instance}}}") == 2
            rss = value(text, f"stellaclaw_process_resident_memory_bytes{{{instance}}}")
            assert 10_000_000 < rss < 2_000_000_000  # this test process, in bytes
            assert "# TYPE stellaclaw_process_resident_memory_bytes gauge" in text
        text = await scrape.until('stellaclaw_up{service="delivery"} 0')
        assert service.id not in text


async def test_a_durables_lag_unacked_and_redelivered_messages_are_shown(bus, nats_access):
    out = subjects.outbound("telegram", CONV)
    for number in range(3):
        await bus.publish(out, b"{}", msg_id=f"lag-{number}")
    durable = subjects.durable("delivery", "telegram")
    pulled = await bus.js.pull_subscribe_bind(durable=durable, stream=subjects.OUT_STREAM)
    first, second = await pulled.fetch(2)
    await first.nak()
    await second.ack_sync()
    [again] = await pulled.fetch(1)  # the nak'd one again: delivered twice, held un-acked
    assert (again.metadata.sequence.stream, again.metadata.num_delivered) == (1, 2)
    for number in range(3, 5):
        await bus.publish(out, b"{}", msg_id=f"lag-{number}")
    labels = f'stream="{subjects.OUT_STREAM}",consumer="{durable}"'
    reader = await bus.js.subscribe(out, stream=subjects.OUT_STREAM, ordered_consumer=True)
    async with endpoint(nats_access) as scrape:
        text = await scrape.text()
    await reader.unsubscribe()
    assert value(text, f"stellaclaw_consumer_pending_messages{{{labels}}}") == 3
    assert value(text, f"stellaclaw_consumer_ack_pending_messages{{{labels}}}") == 1
    assert value(text, f"stellaclaw_consumer_redelivered_messages{{{labels}}}") == 1
    assert value(text, f'stellaclaw_stream_messages{{stream="{subjects.OUT_STREAM}"}}') == 5
    assert value(text, "stellaclaw_jetstream_up") == 1
    assert "KV_" in text  # the buckets' streams are ours too
    # the durables of the layout, never an ephemeral consumer such as the ordered reader's
    consumers = re.findall(r'stellaclaw_consumer_pending_messages\{[^}]*consumer="([^"]+)"', text)
    laid_out = layout.durables(BusConfig(in_partitions=4))
    assert sorted(consumers) == sorted(c.durable for group in laid_out.values() for c in group)


def turn_ended(outcome: str, duration_s: float) -> TurnEnded:
    return TurnEnded(
        conversation_id=CONV,
        session_id=SESSION,
        turn_id=TURN,
        outcome=outcome,  # type: ignore[arg-type]
        duration_s=duration_s,
        at=datetime.now(UTC),
    )


def tool_ended(tool: str, outcome: str, duration_s: float) -> ToolEnded:
    return ToolEnded(
        conversation_id=CONV,
        session_id=SESSION,
        call_id=ToolCallId(f"c_{tool}"),
        tool=tool,
        outcome=outcome,  # type: ignore[arg-type]
        duration_s=duration_s,
    )


def facts() -> list[tuple[str, BusMessage]]:
    """What the services publish on SC_EVENTS during two answered turns and a failed one."""
    used = Usage(input=1000, cache_read=400, output=50, reasoning=20, cost=0.25)
    model_used = ModelUsed(
        conversation_id=CONV,
        session_id=SESSION,
        turn_id=TURN,
        model="main",
        usage=used,
        at=datetime.now(UTC),
        duration_s=2.0,
    )
    dead = DeadLettered(
        service="delivery",
        subject=subjects.outbound("telegram", CONV),
        stream=subjects.OUT_STREAM,
        stream_seq=7,
        deliveries=10,
        last_error="boom",
    )
    bad = BadMessage(service="tools", subject="x", stream_seq=1, reason="malformed")
    turns = [turn_ended("answered", 1.5), turn_ended("answered", 40.0), turn_ended("failed", 0.2)]
    return [
        *((subjects.turn_event(CONV), fact) for fact in turns),
        (subjects.usage_event(CONV), model_used),
        (subjects.tool_event(CONV), tool_ended("shell", "succeeded", 0.07)),
        (subjects.DEAD_LETTER_EVENT, dead),
        (subjects.BAD_MESSAGE_EVENT, bad),
    ]


async def test_facts_on_the_events_stream_become_histograms_and_counters(bus, nats_access):
    async with endpoint(nats_access) as scrape:
        for subject, fact in facts():
            await bus.publish(subject, fact)
        text = await scrape.until('stellaclaw_bad_messages_total{service="tools"} 1')
    lines = text.splitlines()
    answered = 'stellaclaw_turn_duration_seconds_bucket{outcome="answered",le='
    assert f'{answered}"1"}} 0' in lines
    assert f'{answered}"2.5"}} 1' in lines
    assert f'{answered}"60"}} 2' in lines
    assert f'{answered}"+Inf"}} 2' in lines
    assert 'stellaclaw_turn_duration_seconds_count{outcome="failed"} 1' in lines
    assert value(text, 'stellaclaw_turn_duration_seconds_sum{outcome="answered"}') == 41.5
    assert 'stellaclaw_model_call_duration_seconds_count{model="main"} 1' in lines
    assert 'stellaclaw_model_tokens_total{model="main",kind="input"} 1000' in lines
    assert 'stellaclaw_model_tokens_total{model="main",kind="cache_read"} 400' in lines
    assert 'stellaclaw_model_tokens_total{model="main",kind="output"} 50' in lines
    assert 'stellaclaw_model_cost_usd_total{model="main"} 0.25' in lines
    shell = 'tool="shell",outcome="succeeded"'
    assert f'stellaclaw_tool_duration_seconds_bucket{{{shell},le="0.05"}} 0' in lines
    assert f'stellaclaw_tool_duration_seconds_bucket{{{shell},le="0.1"}} 1' in lines
    dead_labels = f'service="delivery",stream="{subjects.OUT_STREAM}"'
    assert f"stellaclaw_dead_letters_total{{{dead_labels}}} 1" in lines
    assert "# TYPE stellaclaw_turn_duration_seconds histogram" in lines
    assert "# TYPE stellaclaw_model_tokens_total counter" in lines


async def test_bad_payloads_on_the_events_subjects_are_skipped_and_counting_goes_on(
    bus, nats_access
):
    async with endpoint(nats_access) as scrape:
        await bus.publish(subjects.event("odd"), b"not json at all")
        await bus.publish(subjects.event("odd"), b'{"kind": "never_heard_of"}')
        await bus.publish(subjects.turn_event(CONV), b'{"kind": "turn_ended", "duration_s": "x"}')
        await scrape.until("stellaclaw_metrics_skipped_events_total 3")
        await bus.publish(subjects.tool_event(CONV), tool_ended("read_file", "failed", 0.01))
        await scrape.until(
            'stellaclaw_tool_duration_seconds_count{tool="read_file",outcome="failed"} 1'
        )


async def test_only_get_metrics_is_served(bus, nats_access):
    async with endpoint(nats_access) as scrape:
        base = scrape.url.removesuffix("/metrics")
        assert (await scrape.client.get(base + "/")).status_code == 404
        assert (await scrape.client.get(base + "/metricsx")).status_code == 404
        assert (await scrape.client.post(scrape.url)).status_code == 405
        head = await scrape.client.head(scrape.url)
        assert head.status_code == 200
        assert int(head.headers["content-length"]) > 0
        assert head.content == b""


async def test_a_port_in_use_is_one_warning_and_no_failure_in_up(bus, nats_access, caplog):
    async def nobody(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    taken = await asyncio.start_server(nobody, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    config = config_file.parse({**MODELS, "metrics": {"bind": f"127.0.0.1:{port}"}}, {})
    async with taken:
        with caplog.at_level(logging.WARNING, logger=metrics.__name__):
            async with asyncio.timeout(15):
                await metrics.serve_in_up(config, nats_access, SERVICES, asyncio.Event())
    [warning] = [r for r in caplog.records if r.name == metrics.__name__]
    assert warning.levelno == logging.WARNING
    assert f"cannot listen on 127.0.0.1:{port}" in warning.getMessage()


def test_the_bind_must_be_host_and_port():
    assert metrics.address("0.0.0.0:9464") == ("0.0.0.0", 9464)
    for wrong in ("", "9464", "host:", "host:99999", "host:port"):
        with pytest.raises(ConfigError):
            metrics.address(wrong)
