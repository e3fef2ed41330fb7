"""Workdir migrations (SPEC §14.3): applied in order before any service starts, each idempotent,
with `VERSION` written after each success. A workdir newer than the code refuses to start.

Version 3 (issue 12) drops the shared `session` durable on SC_SESS: sessions are woken through
SC_WAKE and their owner reads the inputs from its cursor.

Version 2 (issue 11) puts the channel in the inbound subject, `sc.in.<channel>.<conv>`, so a
client's permission can stop at its own channel, and moves bus clients' outputs to their own
stream `SC_OUT_CLI`. SC_IN's subject transform cannot change in place, so the stream is recreated
(its sequence numbers continue where they were, since session inputs are keyed by them) and the
messages no conversation instance has routed yet are published again on their new subjects. They
are first saved under `run/`, so a crash midway resumes instead of losing them.
"""

import base64
import contextlib
import logging
import os
import re
from pathlib import Path

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shared import layout, subjects
from shared.config import BusConfig
from shared.errors import ConfigError

WORKDIR_VERSION = 3
_PARTITION = re.compile(r"^sc\.in\.(\d+)\.([A-Za-z0-9_-]+)$")  # the old stored form
log = logging.getLogger(__name__)


class SavedInput(msgspec.Struct, frozen=True, kw_only=True):
    """An inbound message not yet routed, as it was stored under the old layout."""

    conversation_id: str
    data: str  # base64
    headers: dict[str, str]


class SavedInputs(msgspec.Struct, frozen=True, kw_only=True):
    first_seq: int  # where the recreated stream's sequence numbers start
    inputs: list[SavedInput]


def version_file(workdir: Path) -> Path:
    return workdir / "VERSION"


def found_version(workdir: Path) -> int:
    """The workdir's schema version; a workdir without one is new, so current."""
    path = version_file(workdir)
    if not path.exists():
        return WORKDIR_VERSION
    text = path.read_text(encoding="utf-8").strip()
    if not text.isdigit():
        raise ConfigError(f"workdir: {path} holds {text!r}, not a version number")
    found = int(text)
    if found > WORKDIR_VERSION:
        raise ConfigError(
            f"workdir: workdir version {found} is newer than this Stellaclaw supports "
            f"({WORKDIR_VERSION})"
        )
    return found


async def migrate(js: JetStreamContext, workdir: Path, bus: BusConfig) -> None:
    """Bring the workdir (and its bus) to WORKDIR_VERSION, one recorded step at a time."""
    version = found_version(workdir)
    if version < 2:
        log.info("migrating the workdir to version 2: channel tokens in inbound subjects")
        await split_channels(js, workdir, bus)
        version = 2
        version_file(workdir).write_text(f"{version}\n", encoding="utf-8")
    if version < 3:
        log.info("migrating the workdir to version 3: sessions woken through SC_WAKE")
        await drop_input_durable(js)
        version = 3
    version_file(workdir).write_text(f"{version}\n", encoding="utf-8")


async def drop_input_durable(js: JetStreamContext) -> None:
    """Version 3: session inputs are read by each session's owner from its cursor, so the shared
    `session` durable on SC_SESS goes (nothing would read it, and it would look stuck)."""
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(subjects.SESSION_STREAM, subjects.durable("session"))


async def split_channels(js: JetStreamContext, workdir: Path, bus: BusConfig) -> None:
    saved_path = workdir / "run" / "migration-v2-inputs.json"
    if not saved_path.exists():
        saved = await _save_unrouted(js, saved_path)
        if saved is None:  # nothing of the old SC_IN layout here
            await _narrow_outputs(js)
            return
    saved = msgspec.json.decode(saved_path.read_bytes(), type=SavedInputs)
    await _recreate_inbound(js, bus, saved.first_seq)
    for item in saved.inputs:
        channel: subjects.Channel = "cli" if item.conversation_id.startswith("cli_") else "telegram"
        data = base64.b64decode(item.data)
        await js.publish(
            subjects.inbound(channel, item.conversation_id), data, headers=item.headers
        )
    log.info("published %d unrouted inbound message(s) on their new subjects", len(saved.inputs))
    await _narrow_outputs(js)
    saved_path.unlink()


async def _save_unrouted(js: JetStreamContext, path: Path) -> SavedInputs | None:
    """Save what the old SC_IN holds past each partition's routed point; None if not old."""
    try:
        info = await js.stream_info(subjects.IN_STREAM)
    except NotFoundError:
        return None
    if info.config.subjects != [subjects.LEGACY_INBOUND_ALL]:
        return None
    floors = await _routed_up_to(js)
    inputs: list[SavedInput] = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            stored = await js.get_msg(subjects.IN_STREAM, seq)
        except NotFoundError:
            continue
        found = _PARTITION.match(stored.subject or "")
        if found is None or seq <= floors.get(int(found[1]), 0):
            continue
        data = base64.b64encode(stored.data or b"").decode()
        headers = dict(stored.headers or {})
        inputs.append(SavedInput(conversation_id=found[2], data=data, headers=headers))
    saved = SavedInputs(first_seq=info.state.last_seq + 1, inputs=inputs)
    _write_durably(path, msgspec.json.encode(saved))
    await js.delete_stream(subjects.IN_STREAM)
    return saved


async def _routed_up_to(js: JetStreamContext) -> dict[int, int]:
    """Per old partition, the stream sequence its conversation durable has routed up to."""
    floors: dict[int, int] = {}
    for consumer in await js.consumers_info(subjects.IN_STREAM):
        name = consumer.name or ""
        prefix = subjects.durable("conversation", "p")
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            floors[int(name[len(prefix) :])] = (
                consumer.ack_floor.stream_seq if consumer.ack_floor else 0
            )
    return floors


async def _recreate_inbound(js: JetStreamContext, bus: BusConfig, first_seq: int) -> None:
    try:
        await js.stream_info(subjects.IN_STREAM)
    except NotFoundError:
        config = layout.streams(bus)[0]
        assert config.name == subjects.IN_STREAM
        config.first_seq = first_seq
        await js.add_stream(config)


async def _narrow_outputs(js: JetStreamContext) -> None:
    """Narrow SC_OUT to Telegram's outputs; bus clients' outputs have their own stream now."""
    try:
        info = await js.stream_info(subjects.OUT_STREAM)
    except NotFoundError:
        return
    if info.config.subjects == [subjects.LEGACY_OUTBOUND_ALL]:
        info.config.subjects = [subjects.OUTBOUND_TELEGRAM]
        await js.update_stream(info.config)


def _write_durably(path: Path, data: bytes) -> None:
    """Written and synced before the stream it saves is deleted."""
    with path.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
