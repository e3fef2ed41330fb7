"""A workdir of the foundation's layout (version 1) under today's `stellaclaw up`."""

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    StreamConfig,
    SubjectTransform,
)

from shared import subjects
from shared.ids import ConversationId
from shared.messages.contract import Chat, Sender
from shared.messages.inbound import MessageReceived
from tests.kit import stack as sc_stack
from tests.kit.llm_api import llm_api, reply
from tests.kit.nats import connect_as, nats_server
from tests.kit.telegram_api import telegram_api

pytestmark = pytest.mark.e2e
KEY = "sk-migration"
PARTITIONS = 4
ROUTED, WAITING = 6001, (6002, 6003)


def telegram_message(user: int, text: str) -> bytes:
    chat = Chat(
        conversation_id=ConversationId(f"tg_{user}"),
        channel="telegram",
        kind="private",
        chat_id=user,
    )
    message = MessageReceived(
        chat=chat,
        sender=Sender(user_id=user, display_name="Ada"),
        text=text,
        received_at=datetime.now(UTC),
    )
    return msgspec.json.encode(message)


async def foundation_workdir(workdir: Path) -> int:
    """The foundation's layout with one routed and two waiting messages; SC_IN's last seq."""
    async with nats_server(workdir / "nats", is_authenticated=False) as server:
        nc = await connect_as(server.access, "admin")
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name=subjects.IN_STREAM,
                subjects=[subjects.LEGACY_INBOUND_ALL],
                subject_transform=SubjectTransform(
                    src=subjects.LEGACY_INBOUND_ALL,
                    dest=subjects.legacy_inbound_transform(PARTITIONS),
                ),
            )
        )
        await js.add_stream(name=subjects.OUT_STREAM, subjects=[subjects.LEGACY_OUTBOUND_ALL])
        for partition in range(PARTITIONS):
            name = subjects.durable("conversation", f"p{partition}")
            filter_subject = subjects.legacy_inbound_partition(partition)
            config = ConsumerConfig(
                name=name,
                durable_name=name,
                ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=1,
                filter_subject=filter_subject,
            )
            await js.add_consumer(subjects.IN_STREAM, config)
        old_subject = subjects.LEGACY_INBOUND_ALL.replace("*", f"tg_{ROUTED}")
        await js.publish(old_subject, telegram_message(ROUTED, "answered long ago"))
        routed = await js.pull_subscribe_bind(
            durable=subjects.durable("conversation", f"p{await partition_of(js)}"),
            stream=subjects.IN_STREAM,
        )
        [msg] = await routed.fetch(1, timeout=5)
        await msg.ack_sync()  # the foundation's conversation service routed it
        for user in WAITING:
            old_subject = subjects.LEGACY_INBOUND_ALL.replace("*", f"tg_{user}")
            ack = await js.publish(old_subject, telegram_message(user, "still waiting"))
        await nc.close()
    (workdir / "VERSION").write_text("1\n")
    return ack.seq


async def partition_of(js) -> int:
    """The partition the one stored message landed in."""
    stored = await js.get_msg(subjects.IN_STREAM, 1)
    return int(stored.subject.split(".")[2])


async def test_a_foundation_workdir_is_migrated_and_its_waiting_messages_answered(
    tmp_path, monkeypatch
):
    workdir = tmp_path / "workdir"
    last_seq = await foundation_workdir(workdir)
    async with telegram_api() as telegram, llm_api(api_key=KEY) as llm:
        monkeypatch.setenv(sc_stack.KEY_VARIABLE, KEY)
        monkeypatch.setenv(sc_stack.TOKEN_VARIABLE, telegram.token)
        config = tmp_path / "stellaclaw.toml"
        users = [ROUTED, *WAITING]
        sc_stack.write_config(
            config, llm_base_url=llm.base_url, telegram_base_url=telegram.base_url, user_ids=users
        )
        llm.script(reply("Sorry for the wait."), reply("Sorry for the wait."))
        async with sc_stack.stack(config, workdir) as running:
            nc = await running.wait_ready(sc_stack.SERVICES)
            for user in WAITING:
                assert (await telegram.next_sent(user, timeout_s=30)).text == "Sorry for the wait."
            info = await nc.jetstream().stream_info(subjects.IN_STREAM)
        llm.assert_done()
        assert telegram.transcript(ROUTED) == []
    assert (workdir / "VERSION").read_text() == "3\n"
    assert info.config.subjects == [subjects.INBOUND_ALL]
    assert info.state.first_seq == last_seq + 1  # sequence numbers go on where they were
    assert not (workdir / "run" / "migration-v2-inputs.json").exists()
