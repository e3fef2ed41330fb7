"""Session ownership (DESIGN §5): a lease `sess.<session>` in KV `sc_lease` (`shared.leases`).

The owner renews it every RENEW_S by compare-and-set; a renewal that fails means another owner
took over, and the holder must stop at once.
"""

from nats.js.kv import KeyValue

from shared import subjects
from shared.leases import RENEW_S, TTL_S, Lease, Owner, is_running, release, renew
from shared.leases import acquire as acquire_key
from shared.leases import holder as holder_of

__all__ = [
    "RENEW_S",
    "TTL_S",
    "Lease",
    "Owner",
    "acquire",
    "holder",
    "is_running",
    "release",
    "renew",
]


async def acquire(kv: KeyValue, session_id: str, owner: Owner) -> Lease | None:
    """Take the session's lease, or None while another live owner holds it."""
    return await acquire_key(kv, subjects.session_lease_key(session_id), owner)


async def holder(kv: KeyValue, session_id: str) -> Owner | None:
    """Who holds the session's lease now (None when nobody does)."""
    return await holder_of(kv, subjects.session_lease_key(session_id))
