"""Leases in KV `sc_lease` (DESIGN §5): TTL 15 s with expiry markers, renewed by compare-and-set;
the revision is the fencing token. Sessions (`sess.<session>`) and single-active roles
(`leader.<role>.<bot>`) hold them the same way.

The lease value names its owner: a stable slot id (`<host>/<workdir hash>/<service>/<slot>` under
`stellaclaw up`, `--owner-id` under `stellaclaw run`) and the pid. A restarted process of the same
slot takes its predecessor's leases over at once when that pid is gone from this host; any other
claimant waits for the lease to expire (the server then leaves a marker whose value is None).
"""

import functools
import os

import msgspec
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared import layout
from shared.retrying import through_elections

WRONG_LAST_SEQUENCE = 10071
TTL_S = layout.LEASE_TTL_S
RENEW_S = TTL_S / 3


class Owner(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds a lease: a slot that survives restarts, and the process holding it now."""

    owner_id: str
    pid: int


class Lease(msgspec.Struct, kw_only=True):
    """A lease held: its key and the revision that fences every later write."""

    key: str
    owner: Owner
    revision: int


_OWNER: msgspec.json.Decoder[Owner] = msgspec.json.Decoder(Owner)


def is_running(pid: int) -> bool:
    """Does a process with this pid run on this host (a zombie counts as gone)?"""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:  # a /proc we cannot read: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


async def acquire(kv: KeyValue, key: str, owner: Owner) -> Lease | None:
    """Take the lease `key`, or None while another live owner holds it."""
    value = msgspec.json.encode(owner)
    for _ in range(3):  # a marker may expire between the tries
        try:
            revision = await through_elections(lambda: kv.create(key, value))
            return Lease(key=key, owner=owner, revision=revision)
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await through_elections(lambda: kv.get(key))
        except KeyNotFoundError:
            continue  # the expiry marker itself expired: create again
        if entry.value and not _is_takeover(_OWNER.decode(entry.value), owner):
            return None
        try:
            revision = await through_elections(
                functools.partial(kv.update, key, value, last=entry.revision)
            )
        except KeyWrongLastSequenceError:
            return None  # someone else was quicker
        return Lease(key=key, owner=owner, revision=revision)
    return None


async def holder(kv: KeyValue, key: str) -> Owner | None:
    """Who holds the lease `key` now (None when nobody does)."""
    try:
        entry = await through_elections(lambda: kv.get(key))
    except KeyNotFoundError:
        return None
    return _OWNER.decode(entry.value) if entry.value else None


def _is_takeover(holder: Owner, claimant: Owner) -> bool:
    """The same slot after a restart, with its predecessor gone: take over without waiting."""
    return holder.owner_id == claimant.owner_id and not is_running(holder.pid)


async def renew(kv: KeyValue, lease: Lease) -> bool:
    """Extend the lease by another TTL; False when another owner holds it now."""
    value, last = msgspec.json.encode(lease.owner), lease.revision
    try:
        lease.revision = await through_elections(
            lambda: kv.update(lease.key, value, last=last), retry_s=RENEW_S
        )
    except KeyWrongLastSequenceError:
        return False
    return True


async def release(kv: KeyValue, lease: Lease) -> None:
    """Give the lease up (only if still ours): the next claimant finds it free at once."""
    try:
        await through_elections(lambda: kv.delete(lease.key, last=lease.revision))
    except BadRequestError as exc:  # nats-py raises the base class for a delete here
        if exc.err_code != WRONG_LAST_SEQUENCE:
            raise  # anything but "already someone else's"
