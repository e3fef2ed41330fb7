"""Reading what `sc_files` holds for an output (a long answer's text, SPEC §12.7; a file)."""

import asyncio
import logging

import nats.errors
from nats.js.errors import NotFoundError

from shared import subjects
from shared.connection import Connection
from shared.errors import TransientError

READ_TIMEOUT_S = 30.0
log = logging.getLogger(__name__)


async def read_text(conn: Connection, name: str) -> str | None:
    """The object's text, or None when the store no longer has it (its TTL passed)."""
    data = await read_bytes(conn, name)
    return None if data is None else data.decode("utf-8", errors="replace")


async def read_bytes(conn: Connection, name: str) -> bytes | None:
    """The object's bytes, or None when the store no longer has it (its TTL passed)."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            store = await conn.js.object_store(subjects.FILES_STORE)
            found = await store.get(name)
    except NotFoundError:
        log.warning("%s holds no %s", subjects.FILES_STORE, name)
        return None
    except (TimeoutError, nats.errors.Error) as exc:
        raise TransientError(f"cannot read {name!r} from {subjects.FILES_STORE}: {exc!r}") from exc
    return found.data or b""
