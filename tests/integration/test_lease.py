"""Session leases (DESIGN §5) against a real nats-server, logged in as the session service."""

import asyncio
import os

import httpx
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from services.session import lease
from services.session.actors import ActorPool, Stores
from shared import bus as sc_bus
from shared import config as config_file
from shared import subjects
from shared.messages.session import WAKE
from tests.integration.test_session import config
from tests.kit.waiting import eventually_async

SLOT_A = "host-a/0123abcd/session/0"
SLOT_B = "host-b/0123abcd/session/0"


async def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = await asyncio.create_subprocess_exec("true")
    await process.wait()
    return process.pid


async def test_one_owner_at_a_time_and_a_renewal_fences_the_one_taken_over(bus, nats_access):
    async with sc_bus.connected(nats_access, "session") as conn:
        kv = await sc_bus.bucket(conn, subjects.LEASE_BUCKET)
        mine = await lease.acquire(kv, "s1", lease.Owner(owner_id=SLOT_A, pid=os.getpid()))
        assert mine is not None
        other = lease.Owner(owner_id=SLOT_B, pid=os.getpid())
        assert await lease.acquire(kv, "s1", other) is None  # held by a live owner
        first_revision = mine.revision
        assert await lease.renew(kv, mine)
        assert mine.revision > first_revision
        await lease.release(kv, mine)
        theirs = await lease.acquire(kv, "s1", other)
        assert theirs is not None
        assert not await lease.renew(kv, mine)  # the old holder learns it lost the lease
        await lease.release(kv, mine)  # and cannot release the new holder's
        assert await lease.renew(kv, theirs)


async def test_a_restarted_slot_takes_over_at_once_when_its_predecessor_is_gone(bus, nats_access):
    async with sc_bus.connected(nats_access, "session") as conn:
        kv = await sc_bus.bucket(conn, subjects.LEASE_BUCKET)
        gone = lease.Owner(owner_id=SLOT_A, pid=await dead_pid())
        assert await lease.acquire(kv, "s2", gone) is not None
        elsewhere = lease.Owner(owner_id=SLOT_B, pid=os.getpid())
        assert await lease.acquire(kv, "s2", elsewhere) is None  # another slot waits for expiry
        restarted = lease.Owner(owner_id=SLOT_A, pid=os.getpid())
        taken = await lease.acquire(kv, "s2", restarted)
        assert taken is not None
        assert await lease.acquire(kv, "s2", lease.Owner(owner_id=SLOT_A, pid=1)) is None


async def test_an_expired_lease_can_be_taken_by_anyone(bus, nats_access):
    await bus.js.delete_key_value(subjects.LEASE_BUCKET)  # the same bucket with a 1 s TTL
    short = KeyValueConfig(bucket=subjects.LEASE_BUCKET, ttl=1.0, limit_marker_ttl=1.0)
    await bus.js.create_key_value(short)
    async with sc_bus.connected(nats_access, "session") as conn:
        kv = await sc_bus.bucket(conn, subjects.LEASE_BUCKET)
        held = await lease.acquire(kv, "s3", lease.Owner(owner_id=SLOT_A, pid=os.getpid()))
        assert held is not None
        elsewhere = lease.Owner(owner_id=SLOT_B, pid=os.getpid())
        taken = await eventually_async(
            lambda: lease.acquire(kv, "s3", elsewhere), what="the lease expired and was taken"
        )
        is_renewed = await lease.renew(kv, held)  # the first holder learns it at its renewal
    assert taken.owner == elsewhere
    assert not is_renewed


async def test_an_expired_lease_wakes_its_session_and_an_aged_release_does_not(bus, nats_access):
    """The server marks both a lease that ran out and a release (a delete) that aged out with a
    `MaxAge` marker; only the first means an owner died."""
    await bus.js.delete_key_value(subjects.LEASE_BUCKET)  # the same bucket with a 1 s TTL
    short = KeyValueConfig(bucket=subjects.LEASE_BUCKET, ttl=1.0, limit_marker_ttl=1.0)
    await bus.js.create_key_value(short)
    await bus.watch(subjects.WAKES_ALL)
    owner = lease.Owner(owner_id=SLOT_A, pid=os.getpid())
    async with sc_bus.connected(nats_access, "session") as conn, httpx.AsyncClient() as http:
        kv = await sc_bus.bucket(conn, subjects.LEASE_BUCKET)
        heads = await sc_bus.bucket(conn, subjects.SESSION_BUCKET)
        settings = config_file.parse(config("http://127.0.0.1:9"), {})
        actors = ActorPool(conn, settings, http, Stores(leases=kv, heads=heads))
        watching = asyncio.create_task(actors.watch_leases())
        entries = await kv.watch(subjects.session_lease_key("released"), meta_only=True)
        try:
            released = await lease.acquire(kv, "released", owner)
            assert released is not None
            await lease.release(kv, released)
            seen = [await next_update(entries) for _ in range(4)]  # put, delete, marker
            assert [entry.operation for entry in seen if entry] == [None, "DEL", "PURGE"]
            assert await lease.acquire(kv, "dead", owner) is not None  # never renewed
            woken = await bus.next(subjects.WAKES_ALL, WAKE, timeout_s=10.0)
        finally:
            watching.cancel()
            await entries.stop()  # type: ignore[no-untyped-call]
    assert woken.session_id == "dead"  # the first wake: the aged release woke nothing


async def next_update(watcher: KeyValue.KeyWatcher) -> KeyValue.Entry | None:
    """The watcher's next entry (None marks the end of the initial values)."""
    entry: KeyValue.Entry | None = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
    return entry
