"""Questions conversation asks other services over core request/reply: a session's part of
`/status` (`sc.ctl.sess.<session>`) and what a tool pool offers (`sc.tool.probe.<pool>`)."""

import logging

from nats.errors import NoRespondersError

from shared import bus, subjects
from shared.ids import SessionId
from shared.messages.contract import Workspace
from shared.messages.session import STATUS, SessionStatus, StatusQuery
from shared.messages.tools import PROBE_REPLY, HeldWork, PoolProbed, ProbePool
from shared.sandbox import SandboxSupport

STATUS_TIMEOUT_S = 2.0  # `/status` without the session's part rather than a late reply
PROBE_TIMEOUT_S = 3.0  # a runner answers from what it found at start; silence means none runs
log = logging.getLogger(__name__)


async def probe(conn: bus.Connection, pool: str) -> SandboxSupport | None:
    """What the pool's hosts offer (bubblewrap), or None when no runner answers in time."""
    probed = await pool_probe(conn, pool, ProbePool(), PROBE_TIMEOUT_S)
    return probed.sandbox if probed is not None else None


async def held(conn: bus.Connection, workspace: Workspace) -> list[HeldWork]:
    """The shell sessions and downloads running on in a workspace (none when no runner of its
    pool answers in time)."""
    asked = ProbePool(workspace=workspace)
    probed = await pool_probe(conn, workspace.pool, asked, PROBE_TIMEOUT_S)
    return probed.held if probed is not None else []


async def pool_probe(
    conn: bus.Connection, pool: str, asked: ProbePool, timeout_s: float
) -> PoolProbed | None:
    """A runner of the pool's answer, or None when none answers in time."""
    subject = subjects.tool_probe(pool)
    try:
        answer = await conn.nc.request(subject, bus.encode(asked), timeout=timeout_s)
    except (NoRespondersError, TimeoutError):
        log.warning("no tool runner of pool %s answered the probe", pool)
        return None
    return await bus.decoded(conn, PROBE_REPLY, answer.data, subject)


async def session_status(conn: bus.Connection, session: SessionId) -> SessionStatus | None:
    """The session's part of `/status`, or None when no session service answers in time."""
    subject = subjects.session_control(session)
    query = bus.encode(StatusQuery(session_id=session))
    try:
        answer = await conn.nc.request(subject, query, timeout=STATUS_TIMEOUT_S)
    except (NoRespondersError, TimeoutError):
        log.warning("no status from session %s", session)
        return None
    return await bus.decoded(conn, STATUS, answer.data, subject)
